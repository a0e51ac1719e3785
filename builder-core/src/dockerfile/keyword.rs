//! The instruction keywords.

/// A Dockerfile instruction keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum Keyword {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
}

impl Keyword {
    /// Every keyword, in alphabetical order.
    pub const ALL: [Keyword; 18] = [
        Self::Add,
        Self::Arg,
        Self::Cmd,
        Self::Copy,
        Self::Entrypoint,
        Self::Env,
        Self::Expose,
        Self::From,
        Self::Healthcheck,
        Self::Label,
        Self::Maintainer,
        Self::Onbuild,
        Self::Run,
        Self::Shell,
        Self::Stopsignal,
        Self::User,
        Self::Volume,
        Self::Workdir,
    ];

    /// The keyword in upper case, as docker prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Arg => "ARG",
            Self::Cmd => "CMD",
            Self::Copy => "COPY",
            Self::Entrypoint => "ENTRYPOINT",
            Self::Env => "ENV",
            Self::Expose => "EXPOSE",
            Self::From => "FROM",
            Self::Healthcheck => "HEALTHCHECK",
            Self::Label => "LABEL",
            Self::Maintainer => "MAINTAINER",
            Self::Onbuild => "ONBUILD",
            Self::Run => "RUN",
            Self::Shell => "SHELL",
            Self::Stopsignal => "STOPSIGNAL",
            Self::User => "USER",
            Self::Volume => "VOLUME",
            Self::Workdir => "WORKDIR",
        }
    }

    /// Reads a keyword in any case.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }

    /// Whether BuildKit expands variables (`$VAR`) in this instruction's arguments before using
    /// them. RUN, CMD and ENTRYPOINT leave it to the shell; ONBUILD to its trigger. The Dockerfile
    /// reference's list, plus ARG, whose defaults are expanded too.
    pub fn expands_variables(self) -> bool {
        matches!(
            self,
            Self::Add
                | Self::Arg
                | Self::Copy
                | Self::Env
                | Self::Expose
                | Self::From
                | Self::Label
                | Self::Stopsignal
                | Self::User
                | Self::Volume
                | Self::Workdir
        )
    }

    /// The closest keyword to a misspelt one, if one is close enough to suggest.
    pub fn suggest(word: &str) -> Option<Self> {
        let upper = word.to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .map(|k| (strsim::damerau_levenshtein(&upper, k.as_str()), k))
            .filter(|&(d, k)| d > 0 && d <= 2.max(k.as_str().len() / 4) && d < k.as_str().len())
            .min_by_key(|&(d, _)| d)
            .map(|(_, k)| k)
    }
}

impl std::fmt::Display for Keyword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_instructions_follow_the_reference() {
        let expanding: Vec<&str> = Keyword::ALL
            .into_iter()
            .filter(|k| k.expands_variables())
            .map(Keyword::as_str)
            .collect();
        assert_eq!(
            expanding,
            [
                "ADD",
                "ARG",
                "COPY",
                "ENV",
                "EXPOSE",
                "FROM",
                "LABEL",
                "STOPSIGNAL",
                "USER",
                "VOLUME",
                "WORKDIR"
            ]
        );
    }

    #[test]
    fn suggestions_for_typos() {
        assert_eq!(Keyword::suggest("RUNN"), Some(Keyword::Run));
        assert_eq!(Keyword::suggest("form"), Some(Keyword::From));
        assert_eq!(Keyword::suggest("COPPY"), Some(Keyword::Copy));
        assert_eq!(Keyword::suggest("ENTRYPIONT"), Some(Keyword::Entrypoint));
        assert_eq!(Keyword::suggest("XYZZY"), None);
        assert_eq!(Keyword::from_word("wOrKdIr"), Some(Keyword::Workdir));
    }
}
