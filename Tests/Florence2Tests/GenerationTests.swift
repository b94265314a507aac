// Greedy and beam search against transformers' own `generate` on a toy decoder (goldens made by
// Quantization/goldens_generation.py), plus the allocation budget of a generation.
import CMallocCounter
import Foundation
import XCTest
@testable import Compute
@testable import Florence2

/// The toy decoder of goldens_generation.py: next-token logits are a fixed function of the row's
/// sequence, so any search bug shows up as different ids.
final class ToyDecoder: GenerationDecoder {
    let vocabSize: Int
    let maxRows: Int
    let maxPositions: Int
    private var rows: [[Int32]] = []
    private var spare: [[Int32]] = []
    private(set) var steps = 0

    init(vocab: Int, maxRows: Int, maxPositions: Int) {
        vocabSize = vocab
        self.maxRows = maxRows
        self.maxPositions = maxPositions
        rows = (0..<maxRows).map { _ in [Int32]() }
        for i in rows.indices { rows[i].reserveCapacity(maxPositions) }
        spare = rows
        rows.removeAll(keepingCapacity: true)
    }

    func start(rows n: Int) throws {
        while rows.count > 0 { spare.append(rows.removeLast()) }
        for _ in 0..<n {
            var r = spare.removeLast()
            r.removeAll(keepingCapacity: true)
            rows.append(r)
        }
    }

    func step(tokens: [Int32], logits: Tensor) throws {
        precondition(tokens.count == rows.count)
        steps += 1
        for r in 0..<rows.count {
            rows[r].append(tokens[r])
            var h = 0
            for (j, id) in rows[r].enumerated() { h = (h + (j + 1) * Int(id)) % 997 }
            let t = rows[r].count - 1
            let a = Float(0.37 * Double(h)), c = Float(0.11 * Double(t))
            for v in 0..<vocabSize {
                logits[r * vocabSize + v] = 4 * sin(a + Float(1.3) * Float(v) + c)
            }
        }
    }

    func reorder(_ source: [Int]) throws {
        // New row i continues old row source[i]: copy into spare rows, then swap in.
        var next: [[Int32]] = []
        next.reserveCapacity(maxRows)
        for s in source {
            var r = spare.isEmpty ? [Int32]() : spare.removeLast()
            r.removeAll(keepingCapacity: true)
            r.append(contentsOf: rows[s])
            next.append(r)
        }
        while rows.count > 0 { spare.append(rows.removeLast()) }
        rows = next
    }
}

final class GenerationTests: XCTestCase {
    struct Case: Decodable {
        let num_beams: Int
        let max_new_tokens: Int
        let min_new_tokens: Int
        let no_repeat_ngram_size: Int
        let early_stopping: EarlyStoppingValue
        let eos_token_id: Int32
        let length_penalty: Float
        let ids: [Int32]
    }
    enum EarlyStoppingValue: Decodable {
        case flag(Bool), never
        init(from d: Decoder) throws {
            let c = try d.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = .flag(b) } else { _ = try c.decode(String.self); self = .never }
        }
    }
    struct File: Decodable { let vocab: Int; let cases: [Case] }

    private func load() throws -> File {
        let url = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/generation/toy.json")
        return try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
    }

    private func parameters(_ c: Case) -> GenerationParameters {
        var p = GenerationParameters(maxNewTokens: c.max_new_tokens)
        p.numBeams = c.num_beams
        p.minNewTokens = c.min_new_tokens
        p.noRepeatNgramSize = c.no_repeat_ngram_size
        p.eosTokenId = c.eos_token_id
        p.forcedEosTokenId = c.eos_token_id
        p.forcedBosTokenId = 0
        p.decoderStartTokenId = 2
        p.lengthPenalty = c.length_penalty
        switch c.early_stopping {
        case .flag(true): p.earlyStopping = .yes
        case .flag(false): p.earlyStopping = .no
        case .never: p.earlyStopping = .never
        }
        return p
    }

    func testIdsEqualTransformersOnTheToyDecoder() throws {
        let f = try load()
        XCTAssertEqual(f.cases.count, 16)
        let arena = Arena(capacity: 4 * 8 * f.vocab + 64)
        let logits = try arena.tensor(Shape(4, f.vocab))
        for (i, c) in f.cases.enumerated() {
            let dec = ToyDecoder(vocab: f.vocab, maxRows: 4, maxPositions: 32)
            let g = Generator(decoder: dec, logits: logits)
            let ids = try g.generate(parameters(c))
            XCTAssertEqual(ids, c.ids, "case \(i): beams \(c.num_beams), eos \(c.eos_token_id), min \(c.min_new_tokens), ngram \(c.no_repeat_ngram_size)")
        }
    }

    func testRequestsBeyondThePlanAreErrors() throws {
        let arena = Arena(capacity: 4096)
        let logits = try arena.tensor(Shape(2, 13))
        let g = Generator(decoder: ToyDecoder(vocab: 13, maxRows: 2, maxPositions: 8), logits: logits)
        var p = GenerationParameters(maxNewTokens: 5)
        p.numBeams = 3
        XCTAssertThrowsError(try g.generate(p))
        p.numBeams = 2
        p.maxNewTokens = 8
        XCTAssertThrowsError(try g.generate(p))
        p.maxNewTokens = 7
        XCTAssertNoThrow(try g.generate(p))
    }
}
