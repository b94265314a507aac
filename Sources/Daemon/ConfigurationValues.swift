// Configuration values written as text: durations (`10s`, `500ms`, `2m`, `1m30s`, plain seconds),
// byte sizes (`512MiB`, `1.5GB`, plain bytes; systemd's K/M/G are binary), frame sizes (`640x480`),
// the did-you-mean suggestion for misspelt keys, and the issue/error types every check reports with.
import Foundation

// MARK: - Issues

/// One problem in a configuration file: where (key path, line and column), what was found and what
/// to do about it.
public struct ConfigurationIssue: Sendable, Equatable, CustomStringConvertible {
    /// An error stops the file from being used; a warning is reported and the file is used.
    public enum Severity: String, Sendable, Equatable {
        /// The file is refused.
        case error
        /// Worth knowing; the file is still used.
        case warning
    }

    /// Error or warning.
    public var severity: Severity
    /// The key path, e.g. `cameras.porch.tasks[1].text` (empty for the whole file).
    public var path: String
    /// 1-based line and column in the file, when known.
    public var line: Int?
    /// 1-based column.
    public var column: Int?
    /// What is wrong.
    public var message: String
    /// The offending value as written, when there is one.
    public var value: String?
    /// What to do.
    public var hint: String?

    /// An issue (an error unless `severity` says otherwise).
    public init(severity: Severity = .error, path: String, line: Int? = nil, column: Int? = nil,
                message: String, value: String? = nil, hint: String? = nil) {
        self.severity = severity
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        self.value = value
        self.hint = hint
    }

    /// `line:column: warning: path: message (got 'value'); hint` (the location and severity word
    /// only when known or a warning).
    public var description: String {
        var s = ""
        if let line { s += column.map { "\(line):\($0): " } ?? "\(line): " }
        if severity == .warning { s += "warning: " }
        if !path.isEmpty { s += "\(path): " }
        s += message
        if let value { s += " (got '\(value)')" }
        if let hint { s += "; \(hint)" }
        return s
    }
}

/// A configuration that cannot be used: every error found (not just the first), with the file name.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file (or other source) the issues are about.
    public var source: String
    /// The errors, in file order, and any warnings.
    public var issues: [ConfigurationIssue]

    /// An error about `source`.
    public init(source: String, issues: [ConfigurationIssue]) {
        self.source = source
        self.issues = issues
    }

    /// Only the errors.
    public var errors: [ConfigurationIssue] { issues.filter { $0.severity == .error } }

    /// One line per issue, each prefixed with the source: `file:line:col: path: message; hint`.
    public var description: String {
        issues.map { "\(source):\($0)" }.joined(separator: "\n")
    }
}

// MARK: - Durations

/// Durations in seconds from text.
public enum DurationText {
    private static let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]

    /// Seconds of `text`: a plain number (seconds) or number-unit pairs with units `ms`, `s`, `m`,
    /// `h` (`500ms`, `10s`, `2m`, `1m30s`, `1.5h`); nil when it is none of these or negative.
    public static func seconds(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if let plain = Double(t) { return plain.isFinite && plain >= 0 ? plain : nil }
        var rest = Substring(t)
        var total = 0.0
        var parts = 0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let v = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { $0.isLetter }
            guard let scale = units.first(where: { $0.0 == unit.lowercased() })?.1 else { return nil }
            rest = rest.dropFirst(unit.count).drop { $0 == " " }
            total += v * scale
            parts += 1
        }
        return parts > 0 && total.isFinite ? total : nil
    }

    /// `seconds` written back compactly (`0.5s` as `500ms`, `120` as `2m`), for summaries.
    public static func format(_ seconds: Double) -> String {
        if seconds < 1 { return "\(number(seconds * 1000))ms" }
        if seconds >= 60, seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(number(seconds / 60))m" }
        return "\(number(seconds))s"
    }

    /// A number without a trailing `.0` (`5`, `0.25`).
    public static func number(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(format: "%g", v)
    }
}

// MARK: - Byte sizes

/// Byte counts from text.
public enum ByteSizeText {
    private static let units: [String: Double] = [
        "": 1, "b": 1,
        "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
        "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824, "tib": 1_099_511_627_776,
        // systemd's MemoryMax=1500M convention: bare K, M, G, T are binary.
        "k": 1024, "m": 1_048_576, "g": 1_073_741_824, "t": 1_099_511_627_776,
    ]

    /// Bytes of `text`: a number with an optional unit (`B`; decimal `kB MB GB TB`; binary
    /// `KiB MiB GiB TiB`; bare `K M G T` binary as in systemd), case-insensitive, a space allowed
    /// between; rounded to whole bytes. Nil for anything else, negatives and zero.
    public static func bytes(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let number = t.prefix { $0.isNumber || $0 == "." || $0 == "_" }
        let unit = t.dropFirst(number.count).trimmingCharacters(in: .whitespaces).lowercased()
        guard !number.isEmpty, let v = Double(number.replacingOccurrences(of: "_", with: "")),
              let scale = units[unit] else { return nil }
        let b = (v * scale).rounded()
        guard b.isFinite, b >= 1, b < 9e18 else { return nil }
        return Int(b)
    }
}

// MARK: - Frame sizes

extension FrameSize {
    /// `640x480` (also `X` or `×`); nil unless both sides are whole numbers.
    public init?(text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard let sep = t.firstIndex(where: { $0 == "x" || $0 == "X" || $0 == "×" }),
              let w = Int(t[..<sep].trimmingCharacters(in: .whitespaces)),
              let h = Int(t[t.index(after: sep)...].trimmingCharacters(in: .whitespaces)) else { return nil }
        self.init(width: w, height: h)
    }
}

// MARK: - Suggestions

/// "Did you mean ...?" for misspelt keys and values.
public enum Suggestion {
    /// The candidate nearest to `word` by edit distance (insertions, deletions, substitutions and
    /// swaps of neighbours, case and `-`/`_` ignored), if it is near enough to be a likely typo:
    /// at most 1 edit for words up to 4 characters, 2 up to 8, 3 beyond; failing that, the shortest
    /// candidate that starts with a word of 3 or more characters (`warn` → `warning`).
    public static func nearest(to word: String, among candidates: [String]) -> String? {
        let w = normalize(word)
        let allowed = w.count <= 4 ? 1 : (w.count <= 8 ? 2 : 3)
        var best: (String, Int)?
        for c in candidates {
            let d = distance(w, normalize(c))
            if d <= allowed, best == nil || d < best!.1 { best = (c, d) }
        }
        if let best { return best.0 }
        guard w.count >= 3 else { return nil }
        return candidates.filter { normalize($0).starts(with: w) }.min { $0.count < $1.count }
    }

    private static func normalize(_ s: String) -> [Character] {
        Array(s.lowercased().map { $0 == "-" ? "_" : $0 })
    }

    /// Optimal string alignment distance (Damerau-Levenshtein without repeated edits of a substring).
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
