//! Go's fmt.Sprintf for template `printf`: the verbs %v %s %d %f %g %t
//! %q %x %X %c %%, with flags `-` `0` `+` and width and precision.

use serde_json::Value;

use super::exec::print;

pub fn format(f: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&fl) = chars.peek() {
            match fl {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let number = arg.as_f64();
        let mut s = match verb {
            'd' => match arg.as_i64() {
                Some(i) if plus && i >= 0 => format!("+{i}"),
                Some(i) => i.to_string(),
                None => format!("%!d({})", print(arg)),
            },
            'f' | 'F' => match number {
                Some(x) => format!("{x:.*}", precision.unwrap_or(6)),
                None => format!("%!f({})", print(arg)),
            },
            'g' | 'e' => match number {
                Some(x) => x.to_string(),
                None => format!("%!{verb}({})", print(arg)),
            },
            'x' | 'X' => {
                let h = match (arg.as_i64(), arg.as_str()) {
                    (Some(i), _) => format!("{i:x}"),
                    (_, Some(t)) => t.bytes().map(|b| format!("{b:02x}")).collect(),
                    _ => print(arg),
                };
                if verb == 'X' {
                    h.to_uppercase()
                } else {
                    h
                }
            }
            'q' => serde_json::to_string(&print(arg)).unwrap_or_default(),
            'c' => arg
                .as_u64()
                .and_then(|u| char::from_u32(u as u32))
                .map(String::from)
                .unwrap_or_else(|| format!("%!c({})", print(arg))),
            't' | 's' | 'v' => {
                let t = print(arg);
                match precision {
                    Some(p) if verb == 's' => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            other => format!("%!{other}({})", print(arg)),
        };
        if let Ok(w) = width.parse::<usize>() {
            let len = s.chars().count();
            if len < w {
                let pad = w - len;
                if left {
                    s.push_str(&" ".repeat(pad));
                } else if zero && number.is_some() {
                    let (sign, digits) = match s.strip_prefix('-') {
                        Some(d) => ("-", d.to_string()),
                        None => ("", s.clone()),
                    };
                    s = format!("{sign}{}{digits}", "0".repeat(pad));
                } else {
                    s = format!("{}{s}", " ".repeat(pad));
                }
            }
        }
        out.push_str(&s);
    }
    let extra: Vec<String> = args.map(print).collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}
