//! The word rules a Dockerfile applies to instruction arguments (BuildKit's `shell/lex.go`): quotes, the escape
//! character, and `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}` (and `-`, `+` without the colon)
//! replaced by `ARG` and `ENV` values. Single quotes keep everything literal; double quotes keep whitespace and
//! let `$` expand.

use std::collections::BTreeMap;

/// Variables visible to an instruction: `ARG`s in scope, overridden by `ENV`.
pub(super) type Variables = BTreeMap<String, String>;

/// `text` split into words at unquoted whitespace, each with quotes removed and variables expanded
/// (`ENV a=1 b="x y"`, `LABEL`, `ARG`). `Err` says what is malformed.
pub(super) fn split(
    text: &str,
    escape: char,
    variables: &Variables,
) -> Result<Vec<String>, String> {
    Lexer::new(text, escape, variables).words(true)
}

/// `text` as one word: quotes removed and variables expanded, whitespace kept (`WORKDIR`, `USER`, a `COPY`
/// path).
pub(super) fn single(text: &str, escape: char, variables: &Variables) -> Result<String, String> {
    let words = Lexer::new(text, escape, variables).words(false)?;
    Ok(words.concat())
}

struct Lexer<'a> {
    characters: std::iter::Peekable<std::str::Chars<'a>>,
    escape: char,
    variables: &'a Variables,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str, escape: char, variables: &'a Variables) -> Self {
        Self {
            characters: text.chars().peekable(),
            escape,
            variables,
        }
    }

    fn words(&mut self, split: bool) -> Result<Vec<String>, String> {
        let mut words = Vec::new();
        let mut word = String::new();
        // A word begins with any character, quotes included: `A=""` is the word `A=`, `""` the empty word.
        let mut started = false;
        while let Some(character) = self.characters.next() {
            match character {
                _ if split && character.is_whitespace() => {
                    if started {
                        words.push(std::mem::take(&mut word));
                        started = false;
                    }
                    continue;
                }
                '\'' => self.single_quoted(&mut word)?,
                '"' => self.double_quoted(&mut word)?,
                '$' => word.push_str(&self.dollar()?),
                _ if character == self.escape => {
                    // An escape at the very end is dropped, as BuildKit does.
                    if let Some(next) = self.characters.next() {
                        word.push(next);
                    }
                }
                _ => word.push(character),
            }
            started = true;
        }
        if started {
            words.push(word);
        }
        Ok(words)
    }

    fn single_quoted(&mut self, word: &mut String) -> Result<(), String> {
        for character in self.characters.by_ref() {
            if character == '\'' {
                return Ok(());
            }
            word.push(character);
        }
        Err("a single quote is not closed".to_owned())
    }

    fn double_quoted(&mut self, word: &mut String) -> Result<(), String> {
        while let Some(character) = self.characters.next() {
            match character {
                '"' => return Ok(()),
                '$' => word.push_str(&self.dollar()?),
                _ if character == self.escape => match self.characters.peek() {
                    Some(&next) if next == '"' || next == '$' || next == self.escape => {
                        word.push(next);
                        self.characters.next();
                    }
                    // Other escapes stay as written inside double quotes.
                    _ => word.push(character),
                },
                _ => word.push(character),
            }
        }
        Err("a double quote is not closed".to_owned())
    }

    /// What follows a `$`: a variable's value, or the `$` itself when no name follows.
    fn dollar(&mut self) -> Result<String, String> {
        if self.characters.peek() == Some(&'{') {
            self.characters.next();
            return self.braced();
        }
        let name = self.name();
        if name.is_empty() {
            return Ok("$".to_owned());
        }
        Ok(self.value(&name).unwrap_or_default().to_owned())
    }

    /// `${NAME}` and its modifiers, after the `{`.
    fn braced(&mut self) -> Result<String, String> {
        let name = self.name();
        if name.is_empty() {
            return Err("`${` is not followed by a variable name".to_owned());
        }
        let colon = self.characters.peek() == Some(&':');
        if colon {
            self.characters.next();
        }
        let modifier = self.characters.next();
        let value = self.value(&name);
        // With the colon an empty value counts as unset, as in a POSIX shell.
        let set = value.is_some_and(|value| !colon || !value.is_empty());
        match modifier {
            Some('}') if !colon => Ok(value.unwrap_or_default().to_owned()),
            Some(modifier @ ('-' | '+')) => {
                let word = self.until_closing_brace()?;
                let alternative = single(&word, self.escape, self.variables)?;
                Ok(match (modifier, set) {
                    ('-', true) => value.unwrap_or_default().to_owned(),
                    ('-', false) | ('+', true) => alternative,
                    _ => String::new(),
                })
            }
            _ => Err(format!(
                "`${{{name}…}}` uses a modifier other than `:-`, `:+`, `-` and `+`"
            )),
        }
    }

    /// The raw text up to the `}` that closes the current `${`, nested braces included.
    fn until_closing_brace(&mut self) -> Result<String, String> {
        let mut depth = 0_usize;
        let mut text = String::new();
        for character in self.characters.by_ref() {
            match character {
                '{' => depth += 1,
                '}' if depth == 0 => return Ok(text),
                '}' => depth -= 1,
                _ => {}
            }
            text.push(character);
        }
        Err("a `${` is not closed".to_owned())
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(&character) = self.characters.peek() {
            if !(character.is_ascii_alphanumeric() || character == '_') {
                break;
            }
            name.push(character);
            self.characters.next();
        }
        name
    }

    fn value(&self, name: &str) -> Option<&'a str> {
        self.variables.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables() -> Variables {
        Variables::from([
            ("NAME".to_owned(), "app".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("SPACED".to_owned(), "a b".to_owned()),
        ])
    }

    #[test]
    fn splitting_follows_quotes_escapes_and_variables() {
        let cases: [(&str, &[&str]); 10] = [
            ("a=1 b=2", &["a=1", "b=2"]),
            ("  a   b  ", &["a", "b"]),
            (r#"X="a b" Y=c\ d"#, &["X=a b", "Y=c d"]),
            (r#"'$NAME' "$NAME" $NAME"#, &["$NAME", "app", "app"]),
            (r#"A="" "" B"#, &["A=", "", "B"]),
            ("$SPACED", &["a b"]),
            (r#""say \"hi\" \n""#, &[r#"say "hi" \n"#]),
            (r"\$NAME cost\$", &["$NAME", "cost$"]),
            ("${NAME}-x ${MISSING}y", &["app-x", "y"]),
            ("100$ $", &["100$", "$"]),
        ];
        for (text, expected) in cases {
            assert_eq!(
                split(text, '\\', &variables()),
                Ok(owned(expected)),
                "{text}"
            );
        }
    }

    #[test]
    fn modifiers_choose_between_value_and_word() {
        let cases = [
            ("${NAME:-dflt}", "app"),
            ("${MISSING:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${MISSING-$NAME}", "app"),
            ("${NAME:+set}", "set"),
            ("${EMPTY:+set}", ""),
            ("${EMPTY+set}", "set"),
            ("${MISSING:+set}", ""),
            ("${MISSING:-{x}}", "{x}"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                single(text, '\\', &variables()).as_deref(),
                Ok(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn a_single_word_keeps_whitespace_and_a_backtick_escape_works() {
        assert_eq!(
            single("/srv/$NAME data", '\\', &variables()).as_deref(),
            Ok("/srv/app data")
        );
        assert_eq!(
            split(r"C:\dir a`$b", '`', &variables()),
            Ok(owned(&[r"C:\dir", "a$b"]))
        );
    }

    #[test]
    fn malformed_text_is_an_error() {
        for text in ["'open", "\"open", "${", "${NAME", "${NAME:=x}", "${:-x}"] {
            assert!(split(text, '\\', &variables()).is_err(), "{text}");
        }
    }

    fn owned(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }
}
