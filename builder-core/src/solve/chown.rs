//! `--chown` and `--chmod` as BuildKit applies them: names resolved in the image's `/etc/passwd`
//! and `/etc/group`, symbolic modes evaluated per file.

use std::path::Path;

use super::Error;

/// The largest `/etc/passwd` or `/etc/group` of an image that is read.
const MAX_ID_FILE: u64 = 16 << 20;

/// A text file of the image at `rootfs` (`etc/passwd`, `etc/group`), read inside it: a link to
/// a host file is resolved in the image, a device or an oversized file is not read.
pub(crate) fn image_file(rootfs: &Path, path: &str) -> Option<String> {
    let bytes = crate::fs::Root::open(rootfs)
        .and_then(|r| r.read(path, MAX_ID_FILE))
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn lookup(text: Option<&str>, name: &str) -> Option<(u32, u32)> {
    text?.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&name) && fields.len() >= 3 {
            let id = fields[2].parse().ok()?;
            let gid = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((id, gid))
        } else {
            None
        }
    })
}

/// Resolves `user[:group]` in `rootfs`. As in BuildKit: an unknown user name is uid 0 (gid 0, or
/// the named group's gid); an unknown group name is the user's gid.
pub(crate) fn resolve_chown(spec: &str, rootfs: &Path) -> (u32, u32) {
    let passwd = image_file(rootfs, "etc/passwd");
    let group = image_file(rootfs, "etc/group");
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, user_gid) = match user.parse::<u32>() {
        Ok(id) => (id, lookup_by_id(passwd.as_deref(), id).unwrap_or(id)),
        Err(_) => lookup(passwd.as_deref(), user).unwrap_or((0, 0)),
    };
    let gid = match grp {
        None => user_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => lookup(group.as_deref(), g).map_or(user_gid, |(gid, _)| gid),
        },
    };
    (uid, gid)
}

/// Resolves a `USER` value as the runtime does for the process (runc's `GetExecUser`, which
/// BuildKit's RUN uses), not as `--chown` does: a numeric uid takes its primary group from
/// `/etc/passwd`, else group 0 (`USER 4321` is `4321:0`); a user or group name that the image
/// does not list is an error, never root.
pub(crate) fn resolve_user(spec: &str, rootfs: &Path) -> Result<(u32, u32), Error> {
    let passwd = image_file(rootfs, "etc/passwd");
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let missing = |what: &'static str, name: &str| Error::UnknownUser {
        what,
        name: name.to_owned(),
    };
    let (uid, user_gid) = match user.parse::<u32>() {
        Ok(id) => (id, lookup_by_id(passwd.as_deref(), id).unwrap_or(0)),
        Err(_) => lookup(passwd.as_deref(), user).ok_or_else(|| missing("user", user))?,
    };
    let gid = match grp {
        None | Some("") => user_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => {
                lookup(image_file(rootfs, "etc/group").as_deref(), g)
                    .ok_or_else(|| missing("group", g))?
                    .0
            }
        },
    };
    Ok((uid, gid))
}

/// The home directory RUN gets as `HOME` when its environment has none, as runc sets it: the
/// user's from the image's `/etc/passwd` (by name, or by uid), else `/`.
pub(crate) fn home_of(user: &str, uid: u32, rootfs: &Path) -> String {
    let passwd = image_file(rootfs, "etc/passwd");
    let name = user.split(':').next().unwrap_or_default();
    passwd
        .as_deref()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                let hit = if name.is_empty() || name.parse::<u32>().is_ok() {
                    f.get(2).and_then(|u| u.parse::<u32>().ok()) == Some(uid)
                } else {
                    f.first() == Some(&name)
                };
                (hit && f.len() >= 6 && !f[5].is_empty()).then(|| f[5].to_owned())
            })
        })
        .unwrap_or_else(|| "/".into())
}

/// The primary gid of a numeric uid, if `/etc/passwd` lists it.
fn lookup_by_id(passwd: Option<&str>, uid: u32) -> Option<u32> {
    passwd?.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[2].parse() == Ok(uid))
            .then(|| f[3].parse().ok())
            .flatten()
    })
}

/// A parsed `--chmod`.
#[derive(Debug, Clone)]
pub(crate) enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone)]
pub(crate) struct Clause {
    who: u32,
    op: char,
    perms: String,
}

impl Chmod {
    pub(crate) fn parse(value: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidFlag {
            flag: "--chmod",
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) {
            let m = u32::from_str_radix(value, 8).map_err(|_| invalid("not an octal number"))?;
            if m > 0o7777 {
                return Err(invalid("more than 7777"));
            }
            return Ok(Self::Octal(m));
        }
        let mut clauses = Vec::new();
        for part in value.split(',') {
            let who_len = part
                .find(['+', '-', '='])
                .ok_or_else(|| invalid("expected `+`, `-` or `=`"))?;
            let mut who = 0;
            for c in part[..who_len].chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(invalid("unknown class")),
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            let mut rest = &part[who_len..];
            while let Some(op) = rest.chars().next().filter(|c| matches!(c, '+' | '-' | '=')) {
                rest = &rest[1..];
                let end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
                let perms = &rest[..end];
                if !perms.chars().all(|c| "rwxXst".contains(c)) {
                    return Err(invalid("unknown permission"));
                }
                clauses.push(Clause {
                    who,
                    op,
                    perms: perms.to_owned(),
                });
                rest = &rest[end..];
            }
        }
        Ok(Self::Symbolic(clauses))
    }

    /// The mode a file of `mode` (and kind) gets.
    pub(crate) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Self::Octal(m) => *m,
            Self::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for c in clauses {
                    let any_exec = mode & 0o111 != 0;
                    let mut bits = 0;
                    for p in c.perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || any_exec => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & c.who;
                    mode = match c.op {
                        '+' => mode | bits,
                        '-' => mode & !bits,
                        _ => (mode & !(c.who & 0o777)) | bits,
                    };
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_like_buildkit() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc")).unwrap();
        fs_err::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1001::/app:/bin/sh\n").unwrap();
        fs_err::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\napp:x:1001:\n",
        )
        .unwrap();
        let r = |s| resolve_chown(s, dir.path());
        assert_eq!(r("app"), (1000, 1001));
        assert_eq!(r("app:staff"), (1000, 50));
        assert_eq!(r("nobody:ghosts"), (65534, 65534));
        assert_eq!(r("7:ghosts"), (7, 7));
        assert_eq!(r("ghost"), (0, 0));
        assert_eq!(r("ghost:staff"), (0, 50));
        assert_eq!(r("1000"), (1000, 1001));
        assert_eq!(r("12:34"), (12, 34));
    }

    #[test]
    fn users_resolve_as_the_runtime_does() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc")).unwrap();
        fs_err::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        fs_err::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = |s| resolve_user(s, dir.path()).map_err(|e| e.to_string());
        assert_eq!(r("4321"), Ok((4321, 0)), "no passwd entry: group 0");
        assert_eq!(r("1000"), Ok((1000, 1001)));
        assert_eq!(r("app"), Ok((1000, 1001)));
        assert_eq!(r("app:staff"), Ok((1000, 50)));
        assert_eq!(r("4321:7"), Ok((4321, 7)));
        assert!(
            r("ghost")
                .unwrap_err()
                .contains("unable to find user ghost")
        );
        assert!(
            r("app:ghosts")
                .unwrap_err()
                .contains("unable to find group ghosts")
        );
    }

    #[test]
    fn symbolic_modes() {
        let m = Chmod::parse("u=rwX,go=rX").unwrap();
        assert_eq!(m.apply(0o600, false), 0o644);
        assert_eq!(m.apply(0o700, false), 0o755);
        assert_eq!(m.apply(0o700, true), 0o755);
        assert_eq!(Chmod::parse("a+x").unwrap().apply(0o644, false), 0o755);
        assert_eq!(Chmod::parse("go-w").unwrap().apply(0o777, false), 0o755);
        assert_eq!(Chmod::parse("2775").unwrap().apply(0o644, true), 0o2775);
        assert!(Chmod::parse("8888").is_err());
        assert!(Chmod::parse("u~x").is_err());
    }
}
