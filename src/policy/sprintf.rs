//! `sprintf` as OPA has it: Go's `fmt.Sprintf` over the arguments OPA
//! hands it. A whole number is a Go `int64`, another number a `float64`, a
//! string a `string`, and anything else its Rego text (`[1, "a"]`,
//! `{"a": 1}`, `true`) as a string. (regorus printed `-7` with `%d` as
//! `--7`, refused widths, and printed `%s` of a number as the number.)
//!
//! The verbs and flags Go has for those types are covered: `%v %s %q %d
//! %x %X %o %O %b %c %U %e %E %f %F %g %G %t %%`, flags `+ - # 0 space`,
//! width and precision. Argument indexes (`%[2]d`) and `*` widths are not:
//! such a format is an evaluation error, so the decision denies.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use regorus::Value;

/// One argument, as Go's `fmt` sees it.
enum Arg {
    Int(i128),
    Float(f64),
    Str(String),
}

impl Arg {
    fn of(value: &Value) -> Arg {
        match value {
            Value::String(s) => Arg::Str(s.to_string()),
            Value::Number(_) => match serde_json::to_value(value) {
                Ok(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => Arg::Int(i128::from(i)),
                    (_, Some(u), _) => Arg::Int(i128::from(u)),
                    (_, _, Some(f)) => Arg::Float(f),
                    _ => Arg::Str(n.to_string()),
                },
                _ => Arg::Str(rego_text(value)),
            },
            other => Arg::Str(rego_text(other)),
        }
    }

    /// Go's `%!verb(type=value)` for a verb the type does not take.
    fn bad_verb(&self, verb: char) -> String {
        match self {
            Arg::Int(i) if i64::try_from(*i).is_ok() => format!("%!{verb}(int64={i})"),
            Arg::Int(i) => format!("%!{verb}(*big.Int={i})"),
            Arg::Float(f) => format!("%!{verb}(float64={})", go_g(*f, None, false)),
            Arg::Str(s) => format!("%!{verb}(string={s})"),
        }
    }
}

/// A value as OPA's `Term.String()` writes it.
fn rego_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => go_quote(s),
        Value::Number(_) => serde_json::to_string(value).unwrap_or_default(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(rego_text).collect::<Vec<_>>().join(", ")
        ),
        Value::Set(items) if items.is_empty() => "set()".into(),
        Value::Set(items) => format!(
            "{{{}}}",
            items.iter().map(rego_text).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("{}: {}", rego_text(k), rego_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Undefined => "undefined".into(),
    }
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `%` directive: its flags, width and precision.
#[derive(Default, Clone)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

impl Spec {
    /// Pads `body` (with its sign already in it) to the width.
    fn pad(&self, body: String, numeric: bool) -> String {
        let len = body.chars().count();
        let Some(width) = self.width.filter(|w| *w > len) else {
            return body;
        };
        let fill = width - len;
        if self.minus {
            return body + &" ".repeat(fill);
        }
        if self.zero && numeric {
            // Zeros go after the sign (and a 0x prefix).
            let sign_len = body
                .find(|c: char| !matches!(c, '+' | '-' | ' '))
                .unwrap_or(0);
            let (sign, digits) = body.split_at(sign_len);
            let (prefix, digits) = if digits.starts_with("0x") || digits.starts_with("0X") {
                digits.split_at(2)
            } else {
                ("", digits)
            };
            return format!("{sign}{prefix}{}{digits}", "0".repeat(fill));
        }
        if self.zero {
            return "0".repeat(fill) + &body;
        }
        " ".repeat(fill) + &body
    }

    fn sign(&self, negative: bool) -> &'static str {
        if negative {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        }
    }
}

pub(super) fn sprintf(args: Vec<Value>) -> Result<Value> {
    let format = match &args[0] {
        Value::String(s) => s.to_string(),
        _ => bail!("sprintf: operand 1 must be string"),
    };
    let values: Vec<Arg> = match &args[1] {
        Value::Array(items) => items.iter().map(Arg::of).collect(),
        _ => bail!("sprintf: operand 2 must be array"),
    };
    Ok(Value::from(format_go(&format, &values)?))
}

fn format_go(format: &str, args: &[Arg]) -> Result<String> {
    let mut out = String::with_capacity(format.len() + 16);
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = digits(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(digits(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if matches!(verb, '*' | '[') {
            bail!("sprintf: argument indexes and * widths are not supported");
        }
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        out.push_str(&directive(&spec, verb, arg));
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| match a {
                Arg::Int(i) => format!("int64={i}"),
                Arg::Float(f) => format!("float64={}", go_g(*f, None, false)),
                Arg::Str(s) => format!("string={s}"),
            })
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    Ok(out)
}

fn digits(chars: &mut std::iter::Peekable<std::str::Chars>) -> Option<usize> {
    let mut value: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        value = Some(
            value
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(d as usize),
        );
        chars.next();
    }
    value
}

fn directive(spec: &Spec, verb: char, arg: &Arg) -> String {
    match arg {
        Arg::Str(s) => match verb {
            'v' | 's' => {
                let s = match spec.precision {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                };
                spec.pad(s, false)
            }
            'q' => spec.pad(go_quote(s), false),
            'x' | 'X' => {
                let hex = s
                    .bytes()
                    .map(|b| {
                        if verb == 'x' {
                            format!("{b:02x}")
                        } else {
                            format!("{b:02X}")
                        }
                    })
                    .collect::<String>();
                spec.pad(hex, false)
            }
            _ => arg.bad_verb(verb),
        },
        Arg::Int(i) => {
            let negative = *i < 0;
            let magnitude = i.unsigned_abs();
            let digits = |radix: u32, upper: bool| -> String {
                let text = match radix {
                    2 => format!("{magnitude:b}"),
                    8 => format!("{magnitude:o}"),
                    16 if upper => format!("{magnitude:X}"),
                    16 => format!("{magnitude:x}"),
                    _ => magnitude.to_string(),
                };
                match spec.precision {
                    // Precision is the minimum number of digits; 0 prints nothing for 0.
                    Some(0) if magnitude == 0 => String::new(),
                    Some(p) if p > text.len() => "0".repeat(p - text.len()) + &text,
                    _ => text,
                }
            };
            // With a precision, Go pads with spaces, not zeros.
            let padding = Spec {
                zero: spec.zero && spec.precision.is_none(),
                ..spec.clone()
            };
            let number = |prefix: &str, radix: u32, upper: bool| {
                let body = format!("{}{prefix}{}", spec.sign(negative), digits(radix, upper));
                padding.pad(body, true)
            };
            match verb {
                'v' | 'd' => number("", 10, false),
                'b' => number(if spec.sharp { "0b" } else { "" }, 2, false),
                'o' => number(if spec.sharp { "0" } else { "" }, 8, false),
                'O' => number("0o", 8, false),
                'x' => number(if spec.sharp { "0x" } else { "" }, 16, false),
                'X' => number(if spec.sharp { "0X" } else { "" }, 16, true),
                'c' => char_of(*i)
                    .map_or_else(|| arg.bad_verb(verb), |c| spec.pad(c.to_string(), false)),
                'q' => char_of(*i).map_or_else(
                    || arg.bad_verb(verb),
                    |c| spec.pad(format!("'{}'", c.escape_default()), false),
                ),
                'U' => spec.pad(format!("U+{:04X}", magnitude), false),
                _ => arg.bad_verb(verb),
            }
        }
        Arg::Float(f) => {
            let body = match verb {
                'v' | 'g' => go_g(*f, spec.precision, false),
                'G' => go_g(*f, spec.precision, true),
                'f' | 'F' => format!("{:.*}", spec.precision.unwrap_or(6), f.abs()),
                'e' => go_e(f.abs(), spec.precision.unwrap_or(6), false),
                'E' => go_e(f.abs(), spec.precision.unwrap_or(6), true),
                _ => return arg.bad_verb(verb),
            };
            let body = if matches!(verb, 'v' | 'g' | 'G') {
                // go_g keeps the sign; put the flag sign in front of a positive.
                if body.starts_with('-') {
                    body
                } else {
                    format!("{}{body}", spec.sign(false))
                }
            } else {
                format!("{}{body}", spec.sign(f.is_sign_negative()))
            };
            spec.pad(body, true)
        }
    }
}

fn char_of(i: i128) -> Option<char> {
    u32::try_from(i).ok().and_then(char::from_u32)
}

/// Go's `%e`: mantissa with `precision` digits, exponent with a sign and at
/// least two digits.
fn go_e(f: f64, precision: usize, upper: bool) -> String {
    let text = format!("{:.*e}", precision, f);
    exponent_form(&text, upper)
}

/// Rust's `1.5e3` as Go's `1.5e+03`.
fn exponent_form(text: &str, upper: bool) -> String {
    let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    let e = if upper { 'E' } else { 'e' };
    format!("{mantissa}{e}{sign}{:02}", exp.abs())
}

/// Go's `%g` (and `%v` of a float64): the shortest digits that read back
/// the same (or `precision` significant digits), in exponent form when the
/// exponent is below -4 or at least the precision (6 for the shortest).
fn go_g(f: f64, precision: Option<usize>, upper: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = match precision {
        Some(p) => format!("{:.*e}", p.max(1) - 1, f),
        None => format!("{f:e}"),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Significant digits as given, trailing zeros dropped (Go's %g does).
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let eprec = match precision {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            // Go: with fewer digits than the precision, and no fraction
            // needed, the precision is the digit count.
            if p > digits.len() as i32 && digits.len() as i32 > exp {
                digits.len() as i32
            } else {
                p
            }
        }
    };
    let sign = if negative { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        let mantissa = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.to_string()
        };
        return format!(
            "{sign}{}",
            exponent_form(&format!("{mantissa}e{exp}"), upper)
        );
    }
    // Plain form: the digits with the point placed by the exponent.
    let plain = if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let point = exp as usize + 1;
        if digits.len() > point {
            format!("{}.{}", &digits[..point], &digits[point..])
        } else {
            format!("{digits}{}", "0".repeat(point - digits.len()))
        }
    };
    format!("{sign}{plain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(format: &str, args: serde_json::Value) -> String {
        let args = Value::from(args);
        match sprintf(vec![Value::from(format), args]).unwrap() {
            Value::String(s) => s.to_string(),
            other => panic!("{other:?}"),
        }
    }

    /// Each answer is real OPA's (the differential suite, tests/opa/,
    /// compares these and more against it).
    #[test]
    fn formats_as_go_does() {
        use serde_json::json;
        assert_eq!(go("%d", json!([-7])), "-7");
        assert_eq!(go("%8.3f|", json!([1.23456])), "   1.235|");
        assert_eq!(go("%05d", json!([-42])), "-0042");
        assert_eq!(go("%#x", json!([255])), "0xff");
        assert_eq!(go("%v", json!([123456789.5])), "1.234567895e+08");
        assert_eq!(go("%v", json!([0.00001234])), "1.234e-05");
        assert_eq!(go("%.3g", json!([1234.5678])), "1.23e+03");
        assert_eq!(go("%08.3f", json!([-1.23456])), "-001.235");
        assert_eq!(go("%q", json!(["a\"b\\c\n"])), r#""a\"b\\c\n""#);
        assert_eq!(
            go("%v", json!([{"a": [1, "x", {"b": null}]}])),
            r#"{"a": [1, "x", {"b": null}]}"#
        );
        assert_eq!(go("%s", json!([1])), "%!s(int64=1)");
        assert_eq!(go("%d", json!([1.5])), "%!d(float64=1.5)");
        assert_eq!(go("%s and %s", json!(["one"])), "one and %!s(MISSING)");
        assert_eq!(go("%s", json!(["one", "two"])), "one%!(EXTRA string=two)");
    }

    #[test]
    fn argument_indexes_are_an_error() {
        let args = Value::from(serde_json::json!([1]));
        assert!(sprintf(vec![Value::from("%[1]d"), args]).is_err());
    }
}
