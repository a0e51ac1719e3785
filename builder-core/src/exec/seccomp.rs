//! RUN's seccomp filter, built from `seccomp.json`: data in the schema of Docker's
//! `default.json` (moby/profiles, seccomp v0.2.3), so the two read side by side.
//!
//! Three filters, installed in this order (for the same action, the kernel takes the one
//! installed last):
//! 1. the allow list with its argument rules; anything else is `defaultErrnoRet` (EPERM);
//! 2. runc's stub: a number above the highest the profile names (a syscall newer than the
//!    profile, or any x32 number, which has bit 30 set) is ENOSYS, so libc falls back;
//! 3. the profile's explicit `SCMP_ACT_ERRNO` rules (`clone3` → ENOSYS).
//!
//! The filter is plain data until [`install`]; the tests check decisions on it without
//! installing anything.

use std::collections::BTreeMap;
use std::str::FromStr;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The profile, as data.
pub(super) const PROFILE: &str = include_str!("seccomp.json");

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Profile {
    default_errno_ret: u32,
    syscalls: Vec<Rule>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    args: Vec<Arg>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// Why the profile could not become a filter.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("invalid seccomp profile")]
    Json(#[source] serde_json::Error),
    #[error("invalid seccomp rule for `{name}`: {what}")]
    Rule { name: String, what: String },
    #[error("seccomp filter")]
    Backend(#[source] seccompiler::BackendError),
    #[error("seccomp filter")]
    Seccomp(#[source] seccompiler::Error),
}

/// This build's architecture, as the profile's `arches` name it.
fn arch() -> (&'static str, TargetArch) {
    if cfg!(target_arch = "aarch64") {
        ("aarch64", TargetArch::aarch64)
    } else {
        ("x86_64", TargetArch::x86_64)
    }
}

fn condition(name: &str, a: &Arg) -> Result<SeccompCondition, Error> {
    let op = match a.op.as_str() {
        "SCMP_CMP_EQ" => SeccompCmpOp::Eq,
        "SCMP_CMP_NE" => SeccompCmpOp::Ne,
        "SCMP_CMP_LT" => SeccompCmpOp::Lt,
        "SCMP_CMP_LE" => SeccompCmpOp::Le,
        "SCMP_CMP_GT" => SeccompCmpOp::Gt,
        "SCMP_CMP_GE" => SeccompCmpOp::Ge,
        // Docker's `value` is the mask, `valueTwo` what the masked argument must equal.
        "SCMP_CMP_MASKED_EQ" => SeccompCmpOp::MaskedEq(a.value),
        other => {
            return Err(Error::Rule {
                name: name.to_owned(),
                what: format!("unknown op `{other}`"),
            });
        }
    };
    let value = if a.op == "SCMP_CMP_MASKED_EQ" {
        a.value_two
    } else {
        a.value
    };
    // Flags and families are compared as 32-bit values, as libseccomp does for `int` args.
    let len = if a.value > u64::from(u32::MAX) {
        SeccompCmpArgLen::Qword
    } else {
        SeccompCmpArgLen::Dword
    };
    SeccompCondition::new(a.index, len, op, value).map_err(Error::Backend)
}

/// The three filters of the module doc, as the kernel will run them.
#[derive(Debug)]
pub(super) struct Filters {
    /// Allowed syscall numbers, each with its argument rules (empty: unconditional).
    pub(super) allow: BTreeMap<i64, Vec<SeccompRule>>,
    /// What a syscall not allowed gets.
    pub(super) deny_errno: u32,
    /// Numbers above this are ENOSYS.
    pub(super) highest: i64,
    /// Explicit errno rules: number → errno.
    pub(super) errno: BTreeMap<i64, u32>,
}

/// Reads `json` (a profile in Docker's schema) into the filters for this architecture. Names
/// this architecture has no number for are left out, as libseccomp leaves them.
pub(super) fn filters(json: &str) -> Result<Filters, Error> {
    let profile: Profile = serde_json::from_str(json).map_err(Error::Json)?;
    let (arch_name, _) = arch();
    let mut allow: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut unconditional = std::collections::BTreeSet::new();
    let mut errno = BTreeMap::new();
    let mut highest = 0;
    for rule in &profile.syscalls {
        if !rule.arches.is_empty() && !rule.arches.iter().any(|a| a == arch_name) {
            continue;
        }
        for name in &rule.names {
            let Ok(sysno) = syscalls::Sysno::from_str(name) else {
                continue;
            };
            let nr = i64::from(sysno.id());
            highest = highest.max(nr);
            match rule.action.as_str() {
                "SCMP_ACT_ALLOW" if rule.args.is_empty() => {
                    unconditional.insert(nr);
                    allow.insert(nr, Vec::new());
                }
                "SCMP_ACT_ALLOW" => {
                    let conds = rule
                        .args
                        .iter()
                        .map(|a| condition(name, a))
                        .collect::<Result<Vec<_>, _>>()?;
                    if !unconditional.contains(&nr) {
                        allow
                            .entry(nr)
                            .or_default()
                            .push(SeccompRule::new(conds).map_err(Error::Backend)?);
                    }
                }
                "SCMP_ACT_ERRNO" => {
                    errno.insert(nr, rule.errno_ret.unwrap_or(profile.default_errno_ret));
                }
                other => {
                    return Err(Error::Rule {
                        name: name.clone(),
                        what: format!("unsupported action `{other}`"),
                    });
                }
            }
        }
    }
    Ok(Filters {
        allow,
        deny_errno: profile.default_errno_ret,
        highest,
        errno,
    })
}

impl Filters {
    /// The BPF programs, in the order they are installed.
    fn programs(self) -> Result<Vec<BpfProgram>, Error> {
        let (_, arch) = arch();
        let allow = SeccompFilter::new(
            self.allow,
            SeccompAction::Errno(self.deny_errno),
            SeccompAction::Allow,
            arch,
        )
        .map_err(Error::Backend)?;
        let errno = SeccompFilter::new(
            self.errno.keys().map(|nr| (*nr, Vec::new())).collect(),
            SeccompAction::Allow,
            // One errno for the rules of this filter: every explicit rule of the profile
            // gives ENOSYS today; a second errno would need a filter of its own.
            SeccompAction::Errno(self.errno.values().next().copied().unwrap_or(38)),
            arch,
        )
        .map_err(Error::Backend)?;
        Ok(vec![
            allow.try_into().map_err(Error::Backend)?,
            enosys_stub(self.highest, arch),
            errno.try_into().map_err(Error::Backend)?,
        ])
    }
}

/// runc's ENOSYS stub as BPF: on this architecture, a syscall number above `highest` returns
/// ENOSYS; anything else passes to the other filters.
fn enosys_stub(highest: i64, arch: TargetArch) -> BpfProgram {
    use seccompiler::sock_filter;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let audit_arch: u32 = match arch {
        TargetArch::aarch64 => 0xC000_00B7,
        _ => 0xC000_003E,
    };
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    let enosys = u32::try_from(nix::libc::ENOSYS).unwrap_or(38);
    vec![
        // seccomp_data.arch at offset 4: another architecture is the first filter's matter.
        ins(LD_W_ABS, 0, 0, 4),
        ins(JEQ_K, 1, 0, audit_arch),
        ins(RET_K, 0, 0, RET_ALLOW),
        // seccomp_data.nr at offset 0.
        ins(LD_W_ABS, 0, 0, 0),
        ins(JGT_K, 0, 1, u32::try_from(highest).unwrap_or(u32::MAX)),
        ins(RET_K, 0, 0, RET_ERRNO | enosys),
        ins(RET_K, 0, 0, RET_ALLOW),
    ]
}

/// Installs the profile's filters on this thread (after `no_new_privs`).
pub(super) fn install() -> Result<(), Error> {
    for program in filters(PROFILE)?.programs()? {
        seccompiler::apply_filter(&program).map_err(Error::Seccomp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nr(name: &str) -> i64 {
        i64::from(syscalls::Sysno::from_str(name).unwrap().id())
    }

    #[test]
    fn the_profile_reads_and_names_only_known_syscalls() {
        let f = filters(PROFILE).unwrap();
        assert_eq!(f.deny_errno, 1);
        let profile: Profile = serde_json::from_str(PROFILE).unwrap();
        let (arch, _) = arch();
        let unknown: Vec<&str> = profile
            .syscalls
            .iter()
            .filter(|r| r.arches.is_empty() || r.arches.iter().any(|a| a == arch))
            .flat_map(|r| r.names.iter().map(String::as_str))
            .filter(|n| syscalls::Sysno::from_str(n).is_err())
            .collect();
        // The crate's table may lag the profile by a syscall or two, never more.
        assert!(unknown.len() <= 3, "names without a number: {unknown:?}");
        assert!(f.programs().is_ok());
    }

    #[test]
    fn docker_argument_rules_are_kept() {
        let f = filters(PROFILE).unwrap();
        // Refused outright: mounts, namespaces, modules, keyrings, io_uring, BPF.
        for denied in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "init_module",
            "keyctl",
            "add_key",
            "io_uring_setup",
            "io_uring_enter",
            "bpf",
            "perf_event_open",
            "open_by_handle_at",
            "reboot",
            "swapon",
            "pivot_root",
            "userfaultfd",
            "kexec_load",
        ] {
            assert!(!f.allow.contains_key(&nr(denied)), "{denied} is allowed");
        }
        // Allowed only with arguments: personality, socket, clone.
        for conditional in ["personality", "socket", "clone"] {
            assert!(!f.allow[&nr(conditional)].is_empty(), "{conditional}");
        }
        assert_eq!(f.allow[&nr("personality")].len(), 5);
        assert_eq!(f.allow[&nr("socket")].len(), 3);
        assert!(f.allow[&nr("read")].is_empty());
        assert_eq!(f.errno.get(&nr("clone3")), Some(&38));
        // x32 numbers (bit 30) are all above the highest named syscall.
        assert!(f.highest < 0x4000_0000);
        assert!(f.highest >= nr("fchmodat2"));
    }
}
