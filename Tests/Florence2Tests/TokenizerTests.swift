// Tests of BPETokenizer against transformers 5.23.0 goldens (Fixtures/text/, written by
// Quantization/goldens_text.py) and against a slow obvious reference (ICU regex + naive BPE).
import Compute
import Foundation
import XCTest
@testable import Florence2

// MARK: - Fixtures

/// Reads the JSON fixtures of Fixtures/text/.
enum TextFixtures {
    /// The parsed JSON of `Fixtures/text/<name>`.
    static func json(_ name: String) throws -> Any {
        guard let base = Bundle.module.resourceURL?.appendingPathComponent("Fixtures/text") else {
            throw NSError(domain: "TextFixtures", code: 1, userInfo: [NSLocalizedDescriptionKey: "no Fixtures/text in the test bundle"])
        }
        let data = try Data(contentsOf: base.appendingPathComponent(name))
        return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    }

    /// The small trained tokenizer's tables.
    struct Tables {
        let tokens: [String], merges: [String], types: [Int32], lstrip: Set<String>, rstrip: Set<String>
    }

    /// The two tokenizers with goldens: `small` (trained on a fixed corpus) and `florence2` (the
    /// real vocabulary, rebuilt offline by Quantization/build_tokenizer.py).
    static let names = ["small", "florence2"]

    static func tables(_ name: String) throws -> Tables {
        let o = try json("\(name)_tokenizer.json") as! [String: Any]
        return Tables(tokens: o["tokens"] as! [String], merges: o["merges"] as! [String],
                      types: (o["token_types"] as! [Int]).map(Int32.init),
                      lstrip: Set(o["lstrip"] as! [String]), rstrip: Set(o["rstrip"] as! [String]))
    }

    /// A fixture tokenizer (byte-level BPE, RoBERTa id layout, the Florence-2 added tokens).
    static func tokenizer(_ name: String = "small") throws -> BPETokenizer {
        let t = try tables(name)
        return try BPETokenizer(tokens: t.tokens, merges: t.merges, tokenTypes: t.types,
                                lstripTokens: t.lstrip, rstripTokens: t.rstrip)
    }

    static func ids(_ a: Any?) -> [Int32] { (a as! [Int]).map(Int32.init) }
}

// MARK: - Tests

final class TokenizerTests: XCTestCase {
    func testEncodeMatchesTransformers() throws {
        for name in TextFixtures.names {
            let tok = try TextFixtures.tokenizer(name)
            let g = try TextFixtures.json("\(name)_tokenizer_goldens.json") as! [String: Any]
            XCTAssertEqual(tok.count, g["vocab_size"] as? Int)
            let cases = g["encode"] as! [[String: Any]]
            XCTAssertGreaterThan(cases.count, 100)
            for c in cases {
                let text = c["text"] as! String
                XCTAssertEqual(tok.encode(text), TextFixtures.ids(c["ids"]), "\(name): encode \(text.debugDescription)")
            }
        }
    }

    func testDecodeMatchesTransformers() throws {
        for name in TextFixtures.names {
            let tok = try TextFixtures.tokenizer(name)
            let g = try TextFixtures.json("\(name)_tokenizer_goldens.json") as! [String: Any]
            let cases = g["decode"] as! [[String: Any]]
            XCTAssertGreaterThan(cases.count, 100)
            for c in cases {
                let ids = TextFixtures.ids(c["ids"])
                XCTAssertEqual(tok.decode(ids, skipSpecialTokens: false), c["text"] as? String, "\(name): decode \(ids)")
                XCTAssertEqual(tok.decode(ids, skipSpecialTokens: true), c["text_skip_special"] as? String, "\(name): decode skipping specials \(ids)")
            }
        }
    }

    func testFlorenceTokenIds() throws {
        for name in TextFixtures.names {
            let tok = try TextFixtures.tokenizer(name)
            let loc0 = try XCTUnwrap(tok.id(of: "<loc_0>"))
            for n in [0, 1, 12, 999] { XCTAssertEqual(tok.encode("<loc_\(n)>"), [loc0 + Int32(n)]) }
            XCTAssertEqual(tok.tokenTypes[Int(loc0)], .control)
            XCTAssertEqual(tok.encode("<s></s><pad><unk>"), [0, 2, 1, 3])
        }
        // The real vocabulary: florence2.md 1.9 ids and transformers' integration-test ids for <CAPTION>.
        let real = try TextFixtures.tokenizer("florence2")
        XCTAssertEqual(real.count, 51290)
        XCTAssertEqual(real.id(of: "<od>"), 50265)
        XCTAssertEqual(real.id(of: "<loc_0>"), 50269)
        XCTAssertEqual(real.id(of: "<loc_999>"), 51268)
        XCTAssertEqual(real.id(of: "<and>"), 51288)
        XCTAssertEqual(real.id(of: "<image>"), 51289)
        XCTAssertEqual(real.encoderInputIds(prompt: try Florence2Task.caption.prompt()), [0, 2264, 473, 5, 2274, 6190, 116, 2])
    }

    /// Random strings over an alphabet rich in the pattern's edge cases: encode equals an ICU-regex
    /// pre-tokenizer plus the textbook BPE loop (merge the lowest-rank pair everywhere, repeat).
    func testEncodeMatchesNaiveReference() throws {
      for name in TextFixtures.names {
        let t = try TextFixtures.tables(name)
        let tok = try TextFixtures.tokenizer(name)
        let ref = try NaiveBPE(tokens: t.tokens, merges: t.merges)
        let alphabet: [String] = ["a", "b", "e", "t", "s", "the", " ", " ", "  ", "\n", "\t", "'", "'s", "'ll", "1", "23",
                                  ".", ",", "!", "é", "ß", "世", "😀", "\u{00a0}", "\u{3000}", "x", "in", "image", "ing"]
        var rng = SplitMix64(seed: 12345)
        for _ in 0..<400 {
            var s = ""
            for _ in 0..<Int(rng.next() % 24) { s += alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            XCTAssertEqual(tok.encode(s), ref.encode(s), "\(name): encode \(s.debugDescription)")
        }
      }
    }

    func testGGUFMetadataRoundTrip() throws {
        let t = try TextFixtures.tables("small")
        var w = GGUFWriter()
        w.add("tokenizer.ggml.model", .string("gpt2"))
        w.add("tokenizer.ggml.tokens", .array(.string(t.tokens)))
        w.add("tokenizer.ggml.merges", .array(.string(t.merges)))
        w.add("tokenizer.ggml.token_type", .array(.int32(t.types)))
        w.add("tokenizer.ggml.bos_token_id", .uint32(0))
        w.add("tokenizer.ggml.eos_token_id", .uint32(2))
        w.add("tokenizer.ggml.padding_token_id", .uint32(1))
        w.add("tokenizer.ggml.unknown_token_id", .uint32(3))
        let file = try GGUFFile(bytes: w.bytes(), name: "tokenizer-test")
        let tok = try BPETokenizer(file: file)
        let direct = try TextFixtures.tokenizer("small")
        XCTAssertEqual(tok.tokens, direct.tokens)
        for s in ["What does the image describe?", "a   <mask> b", "car<loc_52><loc_333>", "😀 ñandú"] {
            XCTAssertEqual(tok.encode(s), direct.encode(s))
        }
        XCTAssertEqual([tok.bosId, tok.eosId, tok.padId, tok.unkId], [0, 2, 1, 3])

        var bad = GGUFWriter()
        bad.add("tokenizer.ggml.model", .string("llama"))
        XCTAssertThrowsError(try BPETokenizer(file: try GGUFFile(bytes: bad.bytes(), name: "bad"))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupportedModel("llama"))
        }
    }

    func testTableErrors() throws {
        let tokens = ["a", "b", "ab", "<s>"]
        XCTAssertThrowsError(try BPETokenizer(tokens: tokens, merges: [], tokenTypes: [1, 1, 1])) {
            XCTAssertEqual($0 as? TokenizerError, .countMismatch(tokens: 4, tokenTypes: 3))
        }
        XCTAssertThrowsError(try BPETokenizer(tokens: tokens, merges: [], tokenTypes: [1, 1, 7, 3], bosId: 3, eosId: 3, padId: 3, unkId: 3)) {
            XCTAssertEqual($0 as? TokenizerError, .badTokenType(id: 2, value: 7))
        }
        XCTAssertThrowsError(try BPETokenizer(tokens: tokens, merges: ["a c"], tokenTypes: [1, 1, 1, 3], bosId: 3, eosId: 3, padId: 3, unkId: 3)) {
            guard case let .badMerge(rank, _, _)? = $0 as? TokenizerError else { return XCTFail("\($0)") }
            XCTAssertEqual(rank, 0)
        }
        XCTAssertThrowsError(try BPETokenizer(tokens: tokens, merges: ["ab"], tokenTypes: [1, 1, 1, 3], bosId: 3, eosId: 3, padId: 3, unkId: 3))
        XCTAssertThrowsError(try BPETokenizer(tokens: tokens, merges: [], tokenTypes: [1, 1, 1, 3], bosId: 9)) {
            XCTAssertEqual($0 as? TokenizerError, .badSpecialId(name: "bos", id: 9))
        }
        // A tiny valid table: bytes without a token are dropped, merges apply by rank.
        let tiny = try BPETokenizer(tokens: tokens, merges: ["a b"], tokenTypes: [1, 1, 1, 3], bosId: 3, eosId: 3, padId: 3, unkId: 3)
        XCTAssertEqual(tiny.encode("abcab<s>"), [2, 2, 3])
    }

    /// Rough timing (noisy machine): building the real tokenizer, encoding a 2000-word text.
    func testEncodeSpeed() throws {
        let t = try TextFixtures.tables("florence2")
        let t0 = Date()
        let tok = try BPETokenizer(tokens: t.tokens, merges: t.merges, tokenTypes: t.types)
        print("build: \(t.tokens.count) tokens, \(t.merges.count) merges in \(String(format: "%.0f", Date().timeIntervalSince(t0) * 1000)) ms (rough)")
        let text = String(repeating: "A red stop sign stands at the corner of the street, next to a blue mailbox. ", count: 130)
        let t1 = Date()
        let ids = tok.encode(text)
        let dt = Date().timeIntervalSince(t1)
        print("encode: \(text.unicodeScalars.count) scalars -> \(ids.count) ids in \(String(format: "%.2f", dt * 1000)) ms (rough)")
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: false), text)
    }
}

// MARK: - Reference

/// The slow obvious tokenizer: NSRegularExpression (ICU, which has look-ahead) splits with the
/// GPT-2 pattern; each piece's byte characters are merged by the textbook loop. No added tokens.
struct NaiveBPE {
    let vocab: [String: Int32]
    let ranks: [String: Int]
    let regex: NSRegularExpression

    init(tokens: [String], merges: [String]) throws {
        var v: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() where v[t] == nil { v[t] = Int32(i) }
        vocab = v
        var r: [String: Int] = [:]
        for (i, m) in merges.enumerated() where r[m] == nil { r[m] = i }
        ranks = r
        regex = try NSRegularExpression(pattern: #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#)
    }

    /// GPT-2's byte → character table, written out again.
    static let byteChar: [Character] = {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) { bs.append(b); cs.append(256 + n); n += 1 }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()

    func encode(_ text: String) -> [Int32] {
        let ns = text as NSString
        var out: [Int32] = []
        for m in regex.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            let piece = ns.substring(with: m.range)
            var word = piece.utf8.map { String(NaiveBPE.byteChar[Int($0)]) }
            while word.count > 1 {
                var best: (rank: Int, i: Int)?
                for i in 0..<(word.count - 1) {
                    if let r = ranks[word[i] + " " + word[i + 1]], best == nil || r < best!.rank { best = (r, i) }
                }
                guard let b = best else { break }
                let (l, r) = (word[b.i], word[b.i + 1])
                var merged: [String] = []
                var i = 0
                while i < word.count {
                    if i + 1 < word.count && word[i] == l && word[i + 1] == r { merged.append(l + r); i += 2 } else { merged.append(word[i]); i += 1 }
                }
                word = merged
            }
            out += word.compactMap { vocab[$0] }
        }
        return out
    }
}

