// Florence-2's tokenizer: byte-level BPE as transformers 5.23.0 `BartTokenizer` (an alias of
// `RobertaTokenizer` on the `tokenizers` backend): added-token split, GPT-2 ByteLevel pre-tokenizer,
// BPE by merge rank, ByteLevel decoder with lossy UTF-8.
import Compute

// MARK: - Token types

/// The role of a vocabulary entry, as `tokenizer.ggml.token_type` stores it (Quantization/FORMAT.md).
public enum TokenType: Int32, Sendable, Codable {
    /// An ordinary BPE vocabulary entry.
    case normal = 1
    /// The unknown token (llama.cpp numbering); treated like a control token.
    case unknown = 2
    /// A special added token (`<s>`, `</s>`, `<pad>`, `<loc_N>`, ...): split out of the text before
    /// BPE, and dropped by `decode(_:skipSpecialTokens: true)`.
    case control = 3
    /// A non-special added token: split out before BPE, always decoded.
    case userDefined = 4

    /// Whether HF counts the token as special (`AddedToken.special`).
    public var isSpecial: Bool { self == .control || self == .unknown }
    /// Whether the token is an added token (matched as a whole string before BPE).
    public var isAdded: Bool { self != .normal }
}

// MARK: - Errors

/// Why a tokenizer cannot be built from its tables.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// `tokenizer.ggml.model` is not `gpt2`.
    case unsupportedModel(String)
    /// The token and token-type tables differ in length.
    case countMismatch(tokens: Int, tokenTypes: Int)
    /// A token type outside 1-4.
    case badTokenType(id: Int, value: Int32)
    /// A merge line is malformed or names a token that is not in the vocabulary.
    case badMerge(rank: Int, merge: String, reason: String)
    /// A special token id is outside the vocabulary.
    case badSpecialId(name: String, id: Int64)

    public var description: String {
        switch self {
        case let .unsupportedModel(m): return "tokenizer.ggml.model is '\(m)', expected 'gpt2' (byte-level BPE)"
        case let .countMismatch(t, ty): return "tokenizer.ggml.tokens has \(t) entries but tokenizer.ggml.token_type has \(ty)"
        case let .badTokenType(id, v): return "tokenizer.ggml.token_type[\(id)] is \(v), expected 1, 2, 3 or 4"
        case let .badMerge(rank, m, r): return "tokenizer.ggml.merges[\(rank)] '\(m)': \(r)"
        case let .badSpecialId(n, id): return "tokenizer special id \(n) = \(id) is outside the vocabulary"
        }
    }
}

// MARK: - Tokenizer

/// A byte-level BPE tokenizer (GPT-2 / RoBERTa / BART) with added tokens, equal to transformers
/// 5.23.0's `BartTokenizer` for Florence-2: `encode` gives the ids of
/// `tokenizer(text, add_special_tokens=False)`, `decode` the text of `tokenizer.decode(ids)`.
/// Immutable after construction and safe to share between threads.
public struct BPETokenizer: Sendable {
    /// Token text by id, in the byte-to-unicode alphabet of `vocab.json` (added tokens verbatim).
    public let tokens: [String]
    /// Token type by id.
    public let tokenTypes: [TokenType]
    /// `<s>` (0 in Florence-2).
    public let bosId: Int32
    /// `</s>` (2).
    public let eosId: Int32
    /// `<pad>` (1).
    public let padId: Int32
    /// `<unk>` (3).
    public let unkId: Int32

    /// Token text → id, for BPE results (the first id of a duplicated string wins).
    private let vocab: [String: Int32]
    /// Byte value → id of its one-character token, -1 where the vocabulary lacks it.
    private let byteTokenId: [Int32]                 // [256]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    /// The bytes each id decodes to: `decodeBytes[decodeStart[i] ..< decodeStart[i+1]]`.
    private let decodeBytes: [UInt8]
    private let decodeStart: [Int32]                 // [count + 1]
    /// Special added tokens (matched first, on the raw text), then non-special ones.
    private let specialMatcher: AddedTokenMatcher
    private let userMatcher: AddedTokenMatcher
    /// Added tokens that swallow the whitespace before / after them (HF `lstrip` / `rstrip`).
    private let lstripIds: Set<Int32>
    private let rstripIds: Set<Int32>

    /// Number of ids (base vocabulary plus added tokens).
    public var count: Int { tokens.count }

    /// Builds the tokenizer from its tables.
    /// - Parameters:
    ///   - tokens: token text by id, in the byte-to-unicode alphabet.
    ///   - merges: BPE merges in rank order, each `"left right"`.
    ///   - tokenTypes: 1 normal, 2 unknown, 3 control (special added), 4 user-defined (added).
    ///   - lstripTokens / rstripTokens: added tokens that absorb neighbouring whitespace. The model
    ///     file does not store these flags; RoBERTa and BART give `<mask>` `lstrip=True`.
    public init(tokens: [String], merges: [String], tokenTypes: [Int32],
                bosId: Int32 = 0, eosId: Int32 = 2, padId: Int32 = 1, unkId: Int32 = 3,
                lstripTokens: Set<String> = ["<mask>"], rstripTokens: Set<String> = []) throws {
        guard tokens.count == tokenTypes.count else {
            throw TokenizerError.countMismatch(tokens: tokens.count, tokenTypes: tokenTypes.count)
        }
        var types: [TokenType] = []
        types.reserveCapacity(tokens.count)
        for (i, t) in tokenTypes.enumerated() {
            guard let ty = TokenType(rawValue: t) else { throw TokenizerError.badTokenType(id: i, value: t) }
            types.append(ty)
        }
        for (name, id) in [("bos", bosId), ("eos", eosId), ("pad", padId), ("unk", unkId)] where id < 0 || Int(id) >= tokens.count {
            throw TokenizerError.badSpecialId(name: name, id: Int64(id))
        }
        self.tokens = tokens
        self.tokenTypes = types
        self.bosId = bosId; self.eosId = eosId; self.padId = padId; self.unkId = unkId

        var vocab: [String: Int32] = [:]
        vocab.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where vocab[t] == nil { vocab[t] = Int32(i) }
        self.vocab = vocab

        var byteIds = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            if let id = vocab[String(Character(ByteLevel.byteToScalar[b]))] { byteIds[b] = id }
        }
        byteTokenId = byteIds

        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(merges.count)
        for (rank, m) in merges.enumerated() {
            let parts = m.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError.badMerge(rank: rank, merge: m, reason: "expected two tokens separated by one space")
            }
            let l = String(parts[0]), r = String(parts[1])
            guard let li = vocab[l] else { throw TokenizerError.badMerge(rank: rank, merge: m, reason: "'\(l)' is not in the vocabulary") }
            guard let ri = vocab[r] else { throw TokenizerError.badMerge(rank: rank, merge: m, reason: "'\(r)' is not in the vocabulary") }
            guard let ni = vocab[l + r] else { throw TokenizerError.badMerge(rank: rank, merge: m, reason: "'\(l + r)' is not in the vocabulary") }
            let key = UInt64(UInt32(li)) << 32 | UInt64(UInt32(ri))
            if table[key] == nil { table[key] = UInt64(rank) << 32 | UInt64(UInt32(ni)) }
        }
        self.merges = table

        var bytes: [UInt8] = []
        var starts: [Int32] = [0]
        starts.reserveCapacity(tokens.count + 1)
        for t in tokens {
            ByteLevel.appendDecodedBytes(of: t, to: &bytes)
            starts.append(Int32(bytes.count))
        }
        decodeBytes = bytes
        decodeStart = starts

        var special = AddedTokenMatcher(), user = AddedTokenMatcher()
        var lstrip = Set<Int32>(), rstrip = Set<Int32>()
        for (i, t) in tokens.enumerated() where types[i].isAdded && !t.isEmpty {
            if types[i].isSpecial { special.insert(t, id: Int32(i)) } else { user.insert(t, id: Int32(i)) }
            if lstripTokens.contains(t) { lstrip.insert(Int32(i)) }
            if rstripTokens.contains(t) { rstrip.insert(Int32(i)) }
        }
        specialMatcher = special
        userMatcher = user
        lstripIds = lstrip
        rstripIds = rstrip
    }

    /// Reads `tokenizer.ggml.*` (Quantization/FORMAT.md): model `gpt2`, tokens, merges, token types
    /// and the bos/eos/padding/unknown ids; a missing or mistyped key is an error naming it.
    public init(file f: GGUFFile) throws {
        let model = try f.string("tokenizer.ggml.model")
        guard model == "gpt2" else { throw TokenizerError.unsupportedModel(model) }
        func id(_ k: String) throws -> Int32 {
            let v = try f.u32(k)
            guard v <= UInt32(Int32.max) else { throw TokenizerError.badSpecialId(name: k, id: Int64(v)) }
            return Int32(v)
        }
        try self.init(tokens: try f.stringArray("tokenizer.ggml.tokens"),
                      merges: try f.stringArray("tokenizer.ggml.merges"),
                      tokenTypes: try f.i32Array("tokenizer.ggml.token_type"),
                      bosId: try id("tokenizer.ggml.bos_token_id"), eosId: try id("tokenizer.ggml.eos_token_id"),
                      padId: try id("tokenizer.ggml.padding_token_id"), unkId: try id("tokenizer.ggml.unknown_token_id"))
    }

    /// The id of a token string (an added token or a vocabulary entry), if any.
    public func id(of token: String) -> Int32? { vocab[token] }

    // MARK: - Encoding

    /// The ids of `text` without `<s>`/`</s>` (HF `encode(text, add_special_tokens=False)`).
    /// Added tokens are split out first (special ones on the raw text, then the others; leftmost,
    /// longest match), then each remaining piece goes through the GPT-2 regex and BPE.
    public func encode(_ text: String) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        var out: [Int32] = []
        out.reserveCapacity(scalars.count)
        var scratch = BPEScratch()
        var pieces: [Segment] = []
        split(scalars, 0..<scalars.count, with: specialMatcher, into: &pieces)
        for p in pieces {
            switch p {
            case let .token(id): out.append(id)
            case let .text(r):
                var inner: [Segment] = []
                split(scalars, r, with: userMatcher, into: &inner)
                for q in inner {
                    switch q {
                    case let .token(id): out.append(id)
                    case let .text(r2): encodeOrdinary(scalars, r2, scratch: &scratch, into: &out)
                    }
                }
            }
        }
        return out
    }

    private enum Segment { case text(Range<Int>), token(Int32) }

    /// Splits `s[range]` around the matcher's tokens (HF `AddedVocabulary::split_with_indices`),
    /// applying lstrip/rstrip within the range.
    private func split(_ s: [Unicode.Scalar], _ range: Range<Int>, with m: AddedTokenMatcher, into out: inout [Segment]) {
        if m.isEmpty { if !range.isEmpty { out.append(.text(range)) }; return }
        var textStart = range.lowerBound
        var i = range.lowerBound
        while i < range.upperBound {
            guard let (id, end) = m.longestMatch(s, at: i, limit: range.upperBound) else { i += 1; continue }
            var a = i, b = end
            if lstripIds.contains(id) { while a > textStart && s[a - 1].properties.isWhitespace { a -= 1 } }
            if rstripIds.contains(id) { while b < range.upperBound && s[b].properties.isWhitespace { b += 1 } }
            if a > textStart { out.append(.text(textStart..<a)) }
            out.append(.token(id))
            textStart = b
            i = b
        }
        if textStart < range.upperBound { out.append(.text(textStart..<range.upperBound)) }
    }

    /// Pre-tokenizes `s[range]` with the GPT-2 pattern and appends the BPE ids of every piece.
    private func encodeOrdinary(_ s: [Unicode.Scalar], _ range: Range<Int>, scratch: inout BPEScratch, into out: inout [Int32]) {
        var i = range.lowerBound
        var bytes: [UInt8] = []
        while i < range.upperBound {
            let end = ByteLevel.nextPiece(s, from: i, limit: range.upperBound)
            bytes.removeAll(keepingCapacity: true)
            for k in i..<end { ByteLevel.appendUTF8(s[k], to: &bytes) }
            bpe(bytes, scratch: &scratch, into: &out)
            i = end
        }
    }

    /// BPE over one pre-token's bytes: repeatedly merge the adjacent pair of lowest rank (leftmost
    /// first), as `tokenizers`' `Word::merge_all`. Symbols are a linked list; candidate merges sit in
    /// a min-heap keyed by (rank, position) and are checked when popped.
    private func bpe(_ bytes: [UInt8], scratch w: inout BPEScratch, into out: inout [Int32]) {
        w.reset()
        for b in bytes {
            let id = byteTokenId[Int(b)]
            if id >= 0 { w.append(id) }   // a byte without a token is dropped (BPE without unk_token)
        }
        let n = w.ids.count
        if n == 0 { return }
        if n == 1 { out.append(w.ids[0]); return }
        for p in 0..<(n - 1) { pushPair(at: p, &w) }
        while let top = w.heap.popMin() {
            let rank = UInt32(truncatingIfNeeded: top >> 32), p = Int(UInt32(truncatingIfNeeded: top))
            let q = Int(w.next[p])
            guard w.ids[p] >= 0, q >= 0,
                  let m = merges[UInt64(UInt32(w.ids[p])) << 32 | UInt64(UInt32(w.ids[q]))],
                  UInt32(truncatingIfNeeded: m >> 32) == rank else { continue }
            w.ids[p] = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: m))
            w.ids[q] = -1
            let r = w.next[q]
            w.next[p] = r
            if r >= 0 { w.prev[Int(r)] = Int32(p) }
            if w.prev[p] >= 0 { pushPair(at: Int(w.prev[p]), &w) }
            if r >= 0 { pushPair(at: p, &w) }
        }
        var p = 0
        while p >= 0 { out.append(w.ids[p]); p = Int(w.next[p]) }
    }

    @inline(__always)
    private func pushPair(at p: Int, _ w: inout BPEScratch) {
        let q = Int(w.next[p])
        if let m = merges[UInt64(UInt32(w.ids[p])) << 32 | UInt64(UInt32(w.ids[q]))] {
            w.heap.push((m >> 32) << 32 | UInt64(p))
        }
    }

    // MARK: - Decoding

    /// The text of `ids` (HF `decode(ids, skip_special_tokens:)`): each token's bytes (the
    /// byte-to-unicode map reversed; a token with a character outside that alphabet gives its own
    /// UTF-8), concatenated, then decoded as UTF-8 with U+FFFD for each invalid sequence. Ids outside
    /// the vocabulary are skipped. Florence-2 decodes with `skipSpecialTokens: false`, since its
    /// `<loc_N>` tokens are special.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids {
            guard id >= 0, Int(id) < tokens.count else { continue }
            if skipSpecialTokens && tokenTypes[Int(id)].isSpecial { continue }
            bytes.append(contentsOf: decodeBytes[Int(decodeStart[Int(id)])..<Int(decodeStart[Int(id) + 1])])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: - BPE scratch (one per encode call, reused across pre-tokens)

/// Symbols of the word being merged (a doubly linked list over positions) and the merge heap.
private struct BPEScratch {
    var ids: [Int32] = []       // symbol id, -1 once merged into its left neighbour
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap = MinHeap()

    mutating func reset() {
        ids.removeAll(keepingCapacity: true)
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        heap.removeAll()
    }

    mutating func append(_ id: Int32) {
        let k = Int32(ids.count)
        if k > 0 { next[Int(k) - 1] = k }
        ids.append(id)
        prev.append(k - 1)
        next.append(-1)
    }
}

/// A binary min-heap of UInt64 keys (rank << 32 | position).
private struct MinHeap {
    private var a: [UInt64] = []

    mutating func removeAll() { a.removeAll(keepingCapacity: true) }

    mutating func push(_ x: UInt64) {
        a.append(x)
        var i = a.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if a[p] <= a[i] { break }
            a.swapAt(p, i)
            i = p
        }
    }

    mutating func popMin() -> UInt64? {
        guard let first = a.first else { return nil }
        let last = a.removeLast()
        if a.isEmpty { return first }
        a[0] = last
        var i = 0
        let n = a.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && a[l] < a[m] { m = l }
            if r < n && a[r] < a[m] { m = r }
            if m == i { break }
            a.swapAt(i, m)
            i = m
        }
        return first
    }
}

// MARK: - Added-token matcher (HF's leftmost-longest added-token trie)

/// A trie over the Unicode scalars of the added tokens.
private struct AddedTokenMatcher: Sendable {
    private var children: [UInt64: Int32] = [:]    // (node << 32 | scalar) → child node
    private var terminal: [Int32] = [-1]           // node → token id, -1 if no token ends here
    private var firstScalars = Set<UInt32>()

    var isEmpty: Bool { firstScalars.isEmpty }

    mutating func insert(_ token: String, id: Int32) {
        var node: Int32 = 0
        for (k, u) in token.unicodeScalars.enumerated() {
            if k == 0 { firstScalars.insert(u.value) }
            let key = UInt64(UInt32(node)) << 32 | UInt64(u.value)
            if let c = children[key] { node = c } else {
                let c = Int32(terminal.count)
                terminal.append(-1)
                children[key] = c
                node = c
            }
        }
        if terminal[Int(node)] < 0 { terminal[Int(node)] = id }
    }

    /// The longest token starting at `s[i]` and ending at or before `limit`: (id, end).
    func longestMatch(_ s: [Unicode.Scalar], at i: Int, limit: Int) -> (Int32, Int)? {
        guard firstScalars.contains(s[i].value) else { return nil }
        var node: Int32 = 0
        var best: (Int32, Int)?
        var k = i
        while k < limit, let c = children[UInt64(UInt32(node)) << 32 | UInt64(s[k].value)] {
            node = c
            k += 1
            if terminal[Int(node)] >= 0 { best = (terminal[Int(node)], k) }
        }
        return best
    }
}

// MARK: - Byte level: byte-to-unicode map, GPT-2 pre-tokenizer

/// GPT-2's byte-level alphabet and pre-tokenizer (`tokenizers` `pre_tokenizers.ByteLevel`,
/// `add_prefix_space=False`).
enum ByteLevel {
    /// Byte → printable scalar: `!`…`~`, `¡`…`¬`, `®`…`ÿ` map to themselves, the other 68 bytes to
    /// U+0100 onwards in byte order.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let keep = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if keep { table[b] = Unicode.Scalar(UInt32(b))! } else { table[b] = Unicode.Scalar(256 + n)!; n += 1 }
        }
        return table
    }()

    /// Scalar value (< 324) → byte, -1 outside the alphabet.
    static let scalarToByte: [Int16] = {
        var t = [Int16](repeating: -1, count: 324)
        for b in 0..<256 { t[Int(byteToScalar[b].value)] = Int16(b) }
        return t
    }()

    /// Appends the bytes `token` decodes to: its characters mapped back through the alphabet, or its
    /// own UTF-8 if any character is outside the alphabet (as `tokenizers`' ByteLevel decoder).
    static func appendDecodedBytes(of token: String, to out: inout [UInt8]) {
        let start = out.count
        for u in token.unicodeScalars {
            let b = u.value < 324 ? scalarToByte[Int(u.value)] : -1
            if b < 0 {
                out.removeSubrange(start...)
                out.append(contentsOf: token.utf8)
                return
            }
            out.append(UInt8(b))
        }
    }

    static func appendUTF8(_ u: Unicode.Scalar, to out: inout [UInt8]) {
        let v = u.value
        switch v {
        case 0..<0x80: out.append(UInt8(v))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (v >> 6))); out.append(UInt8(0x80 | (v & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (v >> 12))); out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
        default:
            out.append(UInt8(0xF0 | (v >> 18))); out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }

    /// Character classes of the pattern: `\p{L}`, `\p{N}`, `\s`, anything else.
    enum Class { case letter, number, space, other }

    static func classify(_ u: Unicode.Scalar) -> Class {
        if u.value < 0x80 {   // fast path for ASCII
            switch u.value {
            case 0x41...0x5A, 0x61...0x7A: return .letter
            case 0x30...0x39: return .number
            case 0x09...0x0D, 0x20: return .space
            default: return .other
            }
        }
        let p = u.properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return p.isWhitespace ? .space : .other
        }
    }

    /// The end of the pre-token that starts at `s[i]`: the first alternative of
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` that matches.
    static func nextPiece(_ s: [Unicode.Scalar], from i: Int, limit n: Int) -> Int {
        let c = s[i]
        if c == "'" && i + 1 < n {
            switch s[i + 1] {
            case "s", "t", "m", "d": return i + 2
            case "r" where i + 2 < n && s[i + 2] == "e": return i + 3
            case "v" where i + 2 < n && s[i + 2] == "e": return i + 3
            case "l" where i + 2 < n && s[i + 2] == "l": return i + 3
            default: break
            }
        }
        var start = i
        var cls = classify(c)
        if c == " " && i + 1 < n {
            let nextCls = classify(s[i + 1])
            if nextCls != .space { start = i + 1; cls = nextCls }   // " ?X+" with the optional space
        }
        if cls != .space {
            var j = start + 1
            while j < n && classify(s[j]) == cls { j += 1 }
            return j
        }
        // \s+(?!\S) then \s+: a whitespace run leaves its last character to the word after it.
        var j = i + 1
        while j < n && classify(s[j]) == .space { j += 1 }
        if j == n || j - 1 == i { return j }
        return j - 1
    }
}
