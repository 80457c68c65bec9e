//! The guides in docs/ run as tests: their shell commands are the fenced blocks whose info
//! string is exactly `sh` (a `sh server` block is what the reader runs in another terminal;
//! a test starts the server itself).

/// The `sh` blocks of `markdown`, in order, as one script. Fails the test when there are
/// none, so that a renamed fence cannot turn a guide's test into one that checks nothing.
pub fn sh_blocks(markdown: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in markdown.lines() {
        if inside {
            if line.trim_start().starts_with("```") {
                inside = false;
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        } else if line.trim() == "```sh" {
            inside = true;
        }
    }
    assert!(!out.trim().is_empty(), "no sh blocks found");
    out
}

#[cfg(test)]
mod tests {
    use super::sh_blocks;

    #[test]
    fn only_blocks_marked_sh_are_taken() {
        let md = "text\n```sh\necho one\n```\n```sh server\namtsbuch serve\n```\n```json\n{}\n```\n  ```sh\necho two\n  ```\n";
        assert_eq!(sh_blocks(md), "echo one\n\necho two\n\n");
    }

    #[test]
    #[should_panic(expected = "no sh blocks found")]
    fn a_guide_without_commands_fails() {
        sh_blocks("```bash\necho no\n```\n");
    }
}
