//! INI inventory values as Ansible types them: Python's `ast.literal_eval`, else the text.
//! Numbers (`0x1F`, `1_000`, `1e3`), strings (adjacent ones joined), `True`/`False`/`None`,
//! lists, tuples (as lists) and dicts; anything else stays a string.

use serde_json::{Map, Number, Value};

pub(super) fn ini_value(v: &str) -> Value {
    let mut p = Parser { s: v.as_bytes(), i: 0 };
    match p.expr() {
        Some(val) if p.skip_ws_end() => val,
        _ => Value::String(v.to_string()),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }

    fn skip_ws_end(&mut self) -> bool {
        self.ws();
        self.i == self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Value> {
        self.ws();
        match self.peek()? {
            b'-' | b'+' => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                self.ws();
                let v = self.number()?;
                Some(if neg { negate(v)? } else { v })
            }
            b'0'..=b'9' | b'.' => self.number(),
            b'\'' | b'"' => {
                let mut out = self.string()?;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'\'' | b'"') => out.push_str(&self.string()?),
                        _ => break,
                    }
                }
                Some(Value::String(out))
            }
            b'[' => {
                self.i += 1;
                Some(Value::Array(self.items(b']')?))
            }
            b'(' => {
                self.i += 1;
                // `(x)` is x; `(x,)` and `(x, y)` are tuples.
                let start = self.i;
                if let Some(v) = self.expr() {
                    if self.eat(b')') {
                        return Some(v);
                    }
                }
                self.i = start;
                Some(Value::Array(self.items(b')')?))
            }
            b'{' => {
                self.i += 1;
                let mut m = Map::new();
                if self.eat(b'}') {
                    return Some(Value::Object(m));
                }
                loop {
                    let k = match self.expr()? {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => if b { "True" } else { "False" }.to_string(),
                        _ => return None,
                    };
                    if !self.eat(b':') {
                        return None; // a set: its order is Python's hash order, keep the text
                    }
                    let v = self.expr()?;
                    m.insert(k, v);
                    if self.eat(b'}') {
                        return Some(Value::Object(m));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                    if self.eat(b'}') {
                        return Some(Value::Object(m));
                    }
                }
            }
            c if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Some(Value::Bool(true)),
                    b"False" => Some(Value::Bool(false)),
                    b"None" => Some(Value::Null),
                    _ => {
                        // A string prefix (`r'..'`, `u'..'`): keep simple, only u.
                        if &self.s[start..self.i] == b"u" && matches!(self.peek(), Some(b'\'' | b'"')) {
                            return self.expr();
                        }
                        None
                    }
                }
            }
            _ => None,
        }
    }

    fn items(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        if self.eat(close) {
            return Some(out);
        }
        loop {
            out.push(self.expr()?);
            if self.eat(close) {
                return Some(out);
            }
            if !self.eat(b',') {
                return None;
            }
            if self.eat(close) {
                return Some(out);
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let q = self.peek()?;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            if c == q {
                break;
            }
            if c == b'\\' {
                let e = self.peek()?;
                self.i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0' => out.push(0),
                    b'\\' | b'\'' | b'"' => out.push(e),
                    b'\n' => {}
                    _ => {
                        out.push(b'\\');
                        out.push(e);
                    }
                }
            } else {
                out.push(c);
            }
        }
        String::from_utf8(out).ok()
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self.peek().is_some_and(|c| {
            c.is_ascii_alphanumeric()
                || c == b'_'
                || c == b'.'
                || ((c == b'+' || c == b'-') && matches!(self.s[self.i - 1], b'e' | b'E'))
        }) {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if text.starts_with('_') || text.ends_with('_') || text.contains("__") {
            return None;
        }
        let t = text.replace('_', "");
        let radix = |p: &str, r: u32| {
            t.get(2..)
                .filter(|_| t[..2].eq_ignore_ascii_case(p))
                .and_then(|d| i64::from_str_radix(d, r).ok())
        };
        if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)).or_else(|| radix("0b", 2)) {
            return Some(Value::from(n));
        }
        if t.chars().all(|c| c.is_ascii_digit()) {
            // Python 3 has no `010`: a leading zero is only allowed for zero itself.
            if t.len() > 1 && t.starts_with('0') && t.chars().any(|c| c != '0') {
                return None;
            }
            return t.parse::<i64>().ok().map(Value::from);
        }
        if t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        {
            let f: f64 = t.parse().ok()?;
            return Number::from_f64(f).map(Value::Number);
        }
        None
    }
}

fn negate(v: Value) -> Option<Value> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Value::from(-i))
            } else {
                Number::from_f64(-n.as_f64()?).map(Value::Number)
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::ini_value;
    use serde_json::json;

    #[test]
    fn python_literals() {
        assert_eq!(ini_value("200"), json!(200));
        assert_eq!(ini_value("-7"), json!(-7));
        assert_eq!(ini_value("0x1F"), json!(31));
        assert_eq!(ini_value("0o17"), json!(15));
        assert_eq!(ini_value("010"), json!("010"));
        assert_eq!(ini_value("0.5"), json!(0.5));
        assert_eq!(ini_value("True"), json!(true));
        assert_eq!(ini_value("true"), json!("true"));
        assert_eq!(ini_value("None"), json!(null));
        assert_eq!(ini_value("yes"), json!("yes"));
        assert_eq!(ini_value("[1, 'two', 3.0]"), json!([1, "two", 3.0]));
        assert_eq!(
            ini_value("{'a': 1, 'b': [True, False]}"),
            json!({"a": 1, "b": [true, false]})
        );
        assert_eq!(ini_value("'x' \"y\""), json!("xy"));
        assert_eq!(ini_value("(1, 2)"), json!([1, 2]));
        assert_eq!(ini_value("1 + 2"), json!("1 + 2"));
        assert_eq!(ini_value("hello world"), json!("hello world"));
        assert_eq!(ini_value("1.2.3.4"), json!("1.2.3.4"));
        assert_eq!(ini_value("1_000"), json!(1000));
    }
}
