//! Argument and environment lists as a guest receives them: NUL-terminated strings packed in
//! one buffer, which `args_get` / `environ_get` copy out as they are.
//!
//! A worker builds an environment per request (the Function's variables plus a dozen CGI
//! ones); packing them as they are pushed costs one growing buffer instead of two `String`s per
//! variable, which on the HTTP hot path was a fifth of all allocations. Entries are checked
//! when pushed, so a list is always one the guest may see.

use thiserror::Error;

/// Why a string cannot be an argument or an environment variable.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CStringError {
    /// An argument contains a NUL byte (a guest sees arguments as C strings).
    #[error("argument contains a NUL byte: {0:?}")]
    Arg(String),
    /// An environment variable's name is empty or contains `=` or NUL, or its value contains
    /// NUL.
    #[error("invalid environment variable: {0:?}")]
    Var(String),
}

/// NUL-terminated strings packed in one buffer: an argument list (`prog\0-v\0`) or an
/// environment (`KEY=value\0...`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CStrings {
    bytes: Vec<u8>,
    count: usize,
}

impl std::fmt::Debug for CStrings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

impl CStrings {
    /// An empty list.
    pub fn new() -> Self {
        CStrings::default()
    }

    /// An empty list with room for `bytes` bytes of strings (terminators included).
    pub fn with_capacity(bytes: usize) -> Self {
        CStrings {
            bytes: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// An argument list.
    pub fn from_args<I, S>(args: I) -> Result<CStrings, CStringError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut list = CStrings::new();
        for a in args {
            list.push_arg(a)?;
        }
        Ok(list)
    }

    /// An environment.
    pub fn from_vars<I, K, V>(vars: I) -> Result<CStrings, CStringError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut list = CStrings::new();
        for (k, v) in vars {
            list.push_var(k, v)?;
        }
        Ok(list)
    }

    /// Appends an argument.
    pub fn push_arg(&mut self, arg: impl AsRef<[u8]>) -> Result<(), CStringError> {
        let arg = arg.as_ref();
        if arg.contains(&0) {
            return Err(CStringError::Arg(String::from_utf8_lossy(arg).into_owned()));
        }
        self.push_parts(&[arg]);
        Ok(())
    }

    /// Appends the environment variable `key=value`.
    pub fn push_var(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), CStringError> {
        let (key, value) = (key.as_ref(), value.as_ref());
        if !valid_var(key, value) {
            return Err(CStringError::Var(format!(
                "{}={}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(value)
            )));
        }
        self.push_parts(&[key, b"=", value]);
        Ok(())
    }

    /// Appends the environment variable whose value is `parts` concatenated (a URL from its
    /// pieces, say), without building the value first.
    pub fn push_var_parts(&mut self, key: &[u8], parts: &[&[u8]]) -> Result<(), CStringError> {
        if !valid_var(key, b"") || parts.iter().any(|p| p.contains(&0)) {
            return Err(CStringError::Var(format!(
                "{}={}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&parts.concat())
            )));
        }
        self.bytes.extend_from_slice(key);
        self.bytes.push(b'=');
        self.push_parts(parts);
        Ok(())
    }

    /// Appends every entry of `other`.
    pub fn extend_from(&mut self, other: &CStrings) {
        self.bytes.extend_from_slice(&other.bytes);
        self.count += other.count;
    }

    fn push_parts(&mut self, parts: &[&[u8]]) {
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        self.bytes.push(0);
        self.count += 1;
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The packed strings, each followed by its NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The strings, without their terminators.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone + '_ {
        self.bytes
            .strip_suffix(&[0])
            .into_iter()
            .flat_map(|b| b.split(|c| *c == 0))
    }

    /// The entries of an environment as (name, value).
    pub fn vars(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.iter().map(|e| {
            let eq = e.iter().position(|c| *c == b'=').unwrap_or(e.len());
            (&e[..eq], e.get(eq + 1..).unwrap_or(&[]))
        })
    }

    /// The value of the environment variable `name` (the first one so named).
    pub fn var(&self, name: &str) -> Option<&[u8]> {
        self.vars()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Whether `key=value` can be an environment variable: a name that is not empty and has no `=`
/// or NUL, a value without NUL.
pub fn valid_var(key: &[u8], value: &[u8]) -> bool {
    !key.is_empty() && !key.iter().any(|c| *c == b'=' || *c == 0) && !value.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_pack_and_unpack() {
        let mut env = CStrings::with_capacity(8);
        assert!(env.is_empty());
        assert_eq!(env.iter().count(), 0, "no phantom empty entry");
        env.push_var("A", "1").unwrap();
        env.push_var("EMPTY", "").unwrap();
        env.push_var_parts(b"URL", &[b"http://", b"h", b"/p?q=a=b"])
            .unwrap();
        assert_eq!(env.as_bytes(), b"A=1\0EMPTY=\0URL=http://h/p?q=a=b\0");
        assert_eq!(env.len(), 3);
        assert_eq!(env.var("URL"), Some(&b"http://h/p?q=a=b"[..]));
        assert_eq!(env.var("EMPTY"), Some(&b""[..]));
        assert_eq!(env.var("B"), None);
        for (k, v) in [("", "x"), ("A=B", "c"), ("A\0", "c"), ("A", "c\0")] {
            assert!(matches!(env.push_var(k, v), Err(CStringError::Var(_))));
        }
        assert!(env.push_var_parts(b"U", &[b"a\0"]).is_err());
        assert_eq!(env.len(), 3, "a refused entry leaves the list as it was");
        let mut args = CStrings::new();
        args.push_arg("prog").unwrap();
        args.push_arg("").unwrap();
        assert!(matches!(args.push_arg("a\0b"), Err(CStringError::Arg(_))));
        assert_eq!(args.iter().collect::<Vec<_>>(), [&b"prog"[..], b""]);
        assert_eq!(CStrings::from_args(["prog", ""]).unwrap(), args);
        assert!(CStrings::from_vars([("A", "1"), ("=", "")]).is_err());
        let mut both = args.clone();
        both.extend_from(&env);
        assert_eq!(both.len(), 5);
        assert_eq!(format!("{args:?}"), r#"["prog", ""]"#);
    }
}
