// Python string and `re` semantics that Florence2PostProcessor (transformers 5.23.0) relies on,
// written out by hand over Unicode scalars (Python strings index code points): `str.strip`,
// `str.replace`, `\s`, `\d`, `.`, and the token runs its patterns match.

/// Text as Python sees it: an array of code points.
typealias Scalars = [Unicode.Scalar]

// MARK: - Python str

enum PyText {
    /// `str.isspace()` and `re`'s `\s` for str patterns: Unicode White_Space plus U+001C…U+001F.
    static func isSpace(_ u: Unicode.Scalar) -> Bool {
        (0x1C...0x1F).contains(u.value) || u.properties.isWhitespace
    }

    /// `re`'s `\d` for str patterns (Unicode category Nd) and the digit's value, as `int()` reads it.
    static func digit(_ u: Unicode.Scalar) -> Int? {
        if u.value >= 0x30 && u.value <= 0x39 { return Int(u.value - 0x30) }
        guard u.value >= 0x80, u.properties.generalCategory == .decimalNumber, let v = u.properties.numericValue else { return nil }
        return Int(v)
    }

    /// `str.strip()`.
    static func strip(_ s: Scalars) -> Scalars {
        var a = 0, b = s.count
        while a < b && isSpace(s[a]) { a += 1 }
        while b > a && isSpace(s[b - 1]) { b -= 1 }
        return Array(s[a..<b])
    }

    /// `str.strip()` on a String.
    static func strip(_ s: String) -> String { string(strip(Array(s.unicodeScalars))) }

    /// `str.replace(old, "", count)`: removes non-overlapping occurrences left to right.
    static func remove(_ old: Scalars, from s: Scalars, count limit: Int = .max) -> Scalars {
        var out: Scalars = []
        out.reserveCapacity(s.count)
        var i = 0, done = 0
        while i < s.count {
            if done < limit && hasPrefix(s, at: i, old) { i += old.count; done += 1; continue }
            out.append(s[i]); i += 1
        }
        return out
    }

    /// `s.encode("ascii", "ignore").decode("ascii")`.
    static func asciiOnly(_ s: Scalars) -> Scalars { s.filter { $0.value < 0x80 } }

    /// `old in s`.
    static func contains(_ s: Scalars, _ old: Scalars) -> Bool {
        guard s.count >= old.count else { return false }
        for i in 0...(s.count - old.count) where hasPrefix(s, at: i, old) { return true }
        return false
    }

    static func hasPrefix(_ s: Scalars, at i: Int, _ p: Scalars) -> Bool {
        guard i + p.count <= s.count else { return false }
        for k in 0..<p.count where s[i + k] != p[k] { return false }
        return true
    }

    static func scalars(_ s: String) -> Scalars { Array(s.unicodeScalars) }

    static func string<C: Collection>(_ s: C) -> String where C.Element == Unicode.Scalar {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: s)
        return String(v)
    }
}

// MARK: - Location tokens and runs

enum LocText {
    static let locPrefix = PyText.scalars("<loc_")
    static let sep = PyText.scalars("<sep>")
    static let polyStart = PyText.scalars("<poly>")
    static let polyEnd = PyText.scalars("</poly>")

    /// Matches `<loc_(\d+)>` at `s[i]`: the bin (saturated far beyond any real bin) and the end.
    static func loc(_ s: Scalars, at i: Int) -> (bin: Int, end: Int)? {
        guard PyText.hasPrefix(s, at: i, locPrefix) else { return nil }
        var j = i + locPrefix.count, v = 0
        while j < s.count, let d = PyText.digit(s[j]) { v = min(v * 10 + d, 1 << 40); j += 1 }
        guard j > i + locPrefix.count, j < s.count, s[j] == ">" else { return nil }
        return (v, j + 1)
    }

    /// The end of one run element at `s[i]`: `<loc_\d+>`, and when `polygonTokens` also `<sep>`,
    /// `<poly>`, `</poly>`.
    static func element(_ s: Scalars, at i: Int, polygonTokens: Bool) -> Int? {
        if let l = loc(s, at: i) { return l.end }
        guard polygonTokens else { return nil }
        for t in [sep, polyStart, polyEnd] where PyText.hasPrefix(s, at: i, t) { return i + t.count }
        return nil
    }

    /// `(?:element)+` at `s[i]`, greedy: how many elements and where they end.
    static func run(_ s: Scalars, at i: Int, polygonTokens: Bool) -> (count: Int, end: Int) {
        var j = i, n = 0
        while j < s.count, let e = element(s, at: j, polygonTokens: polygonTokens) { j = e; n += 1 }
        return (n, j)
    }

    /// `re.findall` of `[^<]+(?:element){4,}` (or `(?:element){4,}` when `allowEmptyPhrase`):
    /// the ranges of the phrases.
    static func phrases(_ s: Scalars, allowEmptyPhrase: Bool, polygonTokens: Bool) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = 0
        while i < s.count {
            if allowEmptyPhrase {
                let r = run(s, at: i, polygonTokens: polygonTokens)
                if r.count >= 4 { out.append(i..<r.end); i = r.end } else { i += 1 }
                continue
            }
            if s[i] == "<" { i += 1; continue }
            // [^<]+ runs to the next '<'; any start before it ends there too.
            var q = i
            while q < s.count && s[q] != "<" { q += 1 }
            let r = run(s, at: q, polygonTokens: polygonTokens)
            if r.count >= 4 { out.append(i..<r.end); i = r.end } else { i = q }
        }
        return out
    }

    /// `re.search(r"^\s*(.*?)(?=A|B|...)", s).group()`: the text before the first look-ahead
    /// string, provided no newline comes between the leading whitespace and it; nil if no match.
    static func leadingPhrase(_ s: Scalars, before lookaheads: [Scalars]) -> Scalars? {
        var k = 0
        while k < s.count && PyText.isSpace(s[k]) { k += 1 }
        var j = k
        while true {
            for t in lookaheads where PyText.hasPrefix(s, at: j, t) { return Array(s[..<j]) }
            if j == s.count || s[j] == "\n" { return nil }
            j += 1
        }
    }

    /// `re.finditer` of four consecutive `<loc_(\d+)>`: the bins of each box.
    static func boxes(_ s: Scalars) -> [[Int]] {
        var out: [[Int]] = []
        var i = 0
        while i < s.count {
            var j = i, bins: [Int] = []
            while bins.count < 4, let l = loc(s, at: j) { bins.append(l.bin); j = l.end }
            if bins.count == 4 { out.append(bins); i = j } else { i += 1 }
        }
        return out
    }

    /// The bins of `(?:<loc_(\d+)>)` elements in `s` (`re.finditer(r"<loc_(\d+)>")`).
    static func bins(_ s: Scalars) -> [Int] {
        var out: [Int] = []
        var i = 0
        while i < s.count {
            if let l = loc(s, at: i) { out.append(l.bin); i = l.end } else { i += 1 }
        }
        return out
    }
}
