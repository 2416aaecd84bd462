//! Path routing: exact segments, `:param` segments (percent-decoded), `*` (one segment) and
//! `**` (the rest, possibly empty). When several routes match, the one whose segments are more
//! specific from left to right wins: exact beats parameter beats `*` beats `**`; among equals,
//! the one registered first.

/// Index of a route in registration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub u32);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    Param(String),
    Star,
    Rest,
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Exact(_) => 0,
            Segment::Param(_) => 1,
            Segment::Star => 2,
            Segment::Rest => 3,
        }
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<Segment>,
}

/// A successful match: the route and its parameters in pattern order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub route: RouteId,
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Routes {
    patterns: Vec<Pattern>,
}

/// Why a route pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub &'static str);

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl Routes {
    /// Adds a pattern such as `/ws/user/:userId`; adding the same pattern again returns the
    /// existing id, so a route's handlers can be registered in several calls.
    pub fn add(&mut self, pattern: &str) -> Result<RouteId, PatternError> {
        if !pattern.starts_with('/') {
            return Err(PatternError("route path must start with '/'"));
        }
        let mut segs = Vec::new();
        let parts: Vec<&str> = segments(pattern).collect();
        for (i, s) in parts.iter().enumerate() {
            segs.push(match *s {
                "*" => Segment::Star,
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(PatternError("'**' must be the last segment")),
                p if p.starts_with(':') => {
                    if p.len() == 1 {
                        return Err(PatternError("parameter segment needs a name"));
                    }
                    Segment::Param(p[1..].to_owned())
                }
                p => Segment::Exact(p.to_owned()),
            });
        }
        if let Some(i) = self.patterns.iter().position(|p| p.segments == segs) {
            return Ok(RouteId(i as u32));
        }
        self.patterns.push(Pattern { segments: segs });
        Ok(RouteId((self.patterns.len() - 1) as u32))
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Finds the most specific route for a request path (without the query string).
    /// Allocates only the parameters it returns.
    pub fn find(&self, path: &str) -> Option<Match> {
        let mut best: Option<&Pattern> = None;
        let mut best_at = 0;
        for (i, p) in self.patterns.iter().enumerate() {
            if p.matches(path) && best.is_none_or(|b| p.ranks().lt(b.ranks())) {
                best = Some(p);
                best_at = i;
            }
        }
        let params = best?
            .segments
            .iter()
            .zip(segments(path))
            .filter_map(|(s, v)| match s {
                Segment::Param(name) => Some((name.clone(), percent_decode(v))),
                _ => None,
            })
            .collect();
        Some(Match { route: RouteId(best_at as u32), params })
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        let mut parts = segments(path);
        for seg in &self.segments {
            match (seg, parts.next()) {
                (Segment::Rest, _) => return true,
                (_, None) => return false,
                (Segment::Exact(e), Some(p)) if e != p => return false,
                _ => {}
            }
        }
        parts.next().is_none()
    }

    /// The ranks of its segments, compared left to right; lower is more specific.
    fn ranks(&self) -> impl Iterator<Item = u8> + '_ {
        self.segments.iter().map(Segment::rank)
    }
}

/// Decodes `%XX` escapes; a malformed escape or a result that is not UTF-8 keeps the input.
pub fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return s.to_owned(),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// Splits a query string into decoded key/value pairs (`+` is a space), in order.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(patterns: &[&str]) -> Routes {
        let mut r = Routes::default();
        for p in patterns {
            r.add(p).unwrap();
        }
        r
    }

    #[test]
    fn exact_param_and_wildcards() {
        let r = routes(&["/ws/chat", "/ws/user/:userId", "/ws/*/x", "/files/**"]);
        assert_eq!(r.find("/ws/chat").unwrap().route, RouteId(0));
        let m = r.find("/ws/user/a%20b").unwrap();
        assert_eq!(m.route, RouteId(1));
        assert_eq!(m.params, vec![("userId".to_owned(), "a b".to_owned())]);
        assert_eq!(r.find("/ws/anything/x").unwrap().route, RouteId(2));
        assert_eq!(r.find("/files/a/b/c").unwrap().route, RouteId(3));
        assert_eq!(r.find("/files").unwrap().route, RouteId(3));
        assert!(r.find("/ws/user").is_none());
        assert!(r.find("/ws/user/1/extra").is_none());
        assert!(r.find("/nope").is_none());
    }

    #[test]
    fn precedence_does_not_depend_on_order() {
        let r = routes(&["/**", "/a/*", "/a/:p", "/a/b"]);
        assert_eq!(r.find("/a/b").unwrap().route, RouteId(3));
        assert_eq!(r.find("/a/c").unwrap().route, RouteId(2));
        assert_eq!(r.find("/z").unwrap().route, RouteId(0));
        let r = routes(&["/a/:p/c", "/a/b/:q"]);
        assert_eq!(r.find("/a/b/c").unwrap().route, RouteId(1));
    }

    #[test]
    fn same_pattern_same_id_and_bad_patterns() {
        let mut r = Routes::default();
        assert_eq!(r.add("/a/:x").unwrap(), r.add("/a/:x").unwrap());
        assert!(r.add("a").is_err());
        assert!(r.add("/**/a").is_err());
        assert!(r.add("/a/:").is_err());
    }

    #[test]
    fn query_and_decoding() {
        assert_eq!(
            parse_query("a=1&b=x+y&a=2&flag&c=%E2%82%AC&bad=%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("a".into(), "2".into()),
                ("flag".into(), "".into()),
                ("c".into(), "€".into()),
                ("bad".into(), "%zz".into()),
            ]
        );
    }
}
