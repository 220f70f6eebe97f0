//! Shell-style globs (`*` any run of characters, `/` included; `?` one character), as used by
//! provider-file patterns, authorization rules and tool exposure.

/// Whether `pattern` matches all of `text`. Iterative with one backtrack point: linear in
/// practice, never exponential, whatever the pattern; no allocation for ASCII (rules are checked
/// on every call).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return matches(pattern.as_bytes(), text.as_bytes(), b'*', b'?');
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    matches(&p, &t, '*', '?')
}

fn matches<T: Copy + PartialEq>(p: &[T], t: &[T], any_run: T, any_one: T) -> bool {
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == any_one || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == any_run {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == any_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("*", "anything/at:all"));
        assert!(glob_matches("create_*", "create_issue"));
        assert!(!glob_matches("create_*", "delete_issue"));
        assert!(glob_matches("file:///docs/*", "file:///docs/a/b.md"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("*x*y", "axxbxy"));
        assert!(!glob_matches("", "a"));
        assert!(glob_matches("caf?", "café") && glob_matches("*é", "café"), "characters, not bytes");
    }
}
