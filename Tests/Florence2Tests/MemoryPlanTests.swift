// The Florence-2 memory plan: exact KV-cache sizes, budget failures, limits, strict config keys.
import CMallocCounter
import Foundation
import XCTest
@testable import Compute
@testable import Florence2

/// Florence-2 configuration metadata as the converter writes it (FORMAT.md), base-sized by default.
func florence2Metadata(_ w: inout GGUFWriter, dims: [UInt32] = [128, 256, 512, 1024], heads: [UInt32] = [4, 8, 16, 32],
                       depths: [UInt32] = [1, 1, 9, 1], d: UInt32 = 768, layers: (UInt32, UInt32) = (6, 6),
                       ffn: UInt32 = 3072, textHeads: UInt32 = 12, vocab: UInt32 = 51328, image: UInt32 = 768,
                       skip: String? = nil) {
    func add(_ k: String, _ v: GGUFValue) { if k != skip { w.add(k, v) } }
    add("general.architecture", .string("florence2"))
    add("ocellus.format_version", .uint32(1))
    add("florence2.vision.embed_dim", .array(.uint32(dims)))
    add("florence2.vision.num_heads", .array(.uint32(heads)))
    add("florence2.vision.num_groups", .array(.uint32(heads)))
    add("florence2.vision.depths", .array(.uint32(depths)))
    add("florence2.vision.patch_size", .array(.uint32([7, 3, 3, 3])))
    add("florence2.vision.patch_stride", .array(.uint32([4, 2, 2, 2])))
    add("florence2.vision.patch_padding", .array(.uint32([3, 1, 1, 1])))
    add("florence2.vision.patch_prenorm", .array(.bool([false, true, true, true])))
    add("florence2.vision.window_size", .uint32(12))
    add("florence2.vision.mlp_ratio", .float32(4))
    add("florence2.vision.max_pos_embeddings", .uint32(50))
    add("florence2.vision.max_temporal_embeddings", .uint32(100))
    add("florence2.projection_dim", .uint32(d))
    add("florence2.image_token_id", .uint32(51289))
    add("florence2.text.d_model", .uint32(d))
    add("florence2.text.encoder_layers", .uint32(layers.0))
    add("florence2.text.decoder_layers", .uint32(layers.1))
    add("florence2.text.encoder_heads", .uint32(textHeads))
    add("florence2.text.decoder_heads", .uint32(textHeads))
    add("florence2.text.encoder_ffn_dim", .uint32(ffn))
    add("florence2.text.decoder_ffn_dim", .uint32(ffn))
    add("florence2.text.max_position_embeddings", .uint32(1024))
    add("florence2.text.vocab_size", .uint32(vocab))
    add("florence2.text.scale_embedding", .bool(false))
    add("florence2.layer_norm_eps", .float32(1e-5))
    add("florence2.generation.num_beams", .uint32(3))
    add("florence2.generation.decoder_start_token_id", .uint32(2))
    add("florence2.image.height", .uint32(image))
    add("florence2.image.width", .uint32(image))
    add("florence2.image.mean", .array(.float32([0.485, 0.456, 0.406])))
    add("florence2.image.std", .array(.float32([0.229, 0.224, 0.225])))
    add("florence2.image.rescale_factor", .float32(1.0 / 255))
    add("florence2.image.resample", .uint32(3))
    add("florence2.image.seq_length", .uint32(577))
}

final class MemoryPlanTests: XCTestCase {
    private func baseConfig(skip: String? = nil, textHeads: UInt32 = 12) throws -> Florence2Config {
        var w = GGUFWriter()
        florence2Metadata(&w, textHeads: textHeads, skip: skip)
        return try Florence2Config(file: GGUFFile(bytes: w.bytes(), name: "base.gguf"))
    }

    func testBaseGeometryAndExactKVCache() throws {
        let c = try baseConfig()
        XCTAssertEqual(c.generation.numBeams, 3)
        XCTAssertNil(c.generation.maxLength)
        let limits = Florence2Limits(config: c, threads: 2)
        let g = try Florence2Geometry(config: c, limits: limits)
        XCTAssertEqual(g.stageSizes.map { $0.0 }, [192, 96, 48, 24])
        XCTAssertEqual(g.imageTokens, 577)
        XCTAssertEqual(g.encoderLength, 577 + 256)
        XCTAssertEqual(g.decoderPositions, 257)
        let plan = try Florence2MemoryPlanner.plan(config: c, limits: limits, weightBytes: 123)
        XCTAssertEqual(plan.weightBytes, 123)
        // 6 decoder layers × (K, V) × 3 beams × 257 positions × 768 × 4 bytes, and cross K/V over 833.
        XCTAssertEqual(plan.kvCacheBytes, 6 * 2 * 3 * 257 * 768 * 4 + 6 * 2 * 833 * 768 * 4)
        // The two vision residual buffers of stage 0 ([36864, 128] f32 each) are the floor of the arena.
        XCTAssertGreaterThan(plan.arenaBytes, 2 * 36864 * 128 * 4)
        XCTAssertLessThan(plan.arenaBytes, 150 << 20, plan.render())
        XCTAssertEqual(plan.totalBytes, plan.weightBytes + plan.arenaBytes + plan.kvCacheBytes)
    }

    func testPlanGrowsWithTheLimits() throws {
        let c = try baseConfig()
        var small = Florence2Limits(config: c, threads: 2)
        small.numBeams = 1
        small.maxNewTokens = 32
        var big = small
        big.numBeams = 3
        big.maxNewTokens = 512
        big.imageWidth = 960  // 30x30 features: 901 image tokens
        big.imageHeight = 960
        big.maxPromptTokens = 64
        let ps = try Florence2MemoryPlanner.plan(config: c, limits: small, weightBytes: 0)
        let pb = try Florence2MemoryPlanner.plan(config: c, limits: big, weightBytes: 0)
        XCTAssertLessThan(ps.kvCacheBytes, pb.kvCacheBytes)
        XCTAssertLessThan(ps.arenaBytes, pb.arenaBytes)
    }

    func testOverBudgetIsAClearError() throws {
        let c = try baseConfig()
        let plan = try Florence2MemoryPlanner.plan(config: c, limits: Florence2Limits(config: c, threads: 2), weightBytes: 200 << 20)
        XCTAssertNoThrow(try plan.check(budget: nil))
        XCTAssertNoThrow(try plan.check(budget: plan.totalBytes))
        XCTAssertThrowsError(try plan.check(budget: plan.totalBytes - 1)) { e in
            guard case let MemoryError.overBudget(needed, budget, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(needed, plan.totalBytes)
            XCTAssertEqual(budget, plan.totalBytes - 1)
            XCTAssertTrue("\(e)".contains("memory_budget"), "\(e)")
        }
    }

    func testLimitsTheModelCannotServe() throws {
        let c = try baseConfig()
        var l = Florence2Limits(config: c, threads: 2)
        l.imageWidth = 2048  // 64x64 feature map > 50-row position tables
        XCTAssertThrowsError(try Florence2Geometry(config: c, limits: l)) { XCTAssertTrue("\($0)".contains("position tables"), "\($0)") }
        l = Florence2Limits(config: c, threads: 2)
        l.maxPromptTokens = 500  // 577 + 500 > 1024
        XCTAssertThrowsError(try Florence2Geometry(config: c, limits: l)) { XCTAssertTrue("\($0)".contains("1024 positions"), "\($0)") }
        l = Florence2Limits(config: c, threads: 2)
        l.maxNewTokens = 1024
        XCTAssertThrowsError(try Florence2Geometry(config: c, limits: l)) { XCTAssertTrue("\($0)".contains("max new tokens"), "\($0)") }
        l = Florence2Limits(config: c, threads: 2)
        l.numBeams = 0
        XCTAssertThrowsError(try Florence2Geometry(config: c, limits: l))
    }

    func testMissingOrBadKeysNameTheKey() throws {
        XCTAssertThrowsError(try baseConfig(skip: "florence2.text.decoder_layers")) { e in
            XCTAssertTrue("\(e)".contains("florence2.text.decoder_layers"), "\(e)")
            XCTAssertTrue("\(e)".contains("base.gguf"), "\(e)")
        }
        XCTAssertThrowsError(try baseConfig(textHeads: 7)) { e in
            XCTAssertTrue("\(e)".contains("florence2.text.encoder_heads"), "\(e)")
        }
        var w = GGUFWriter()
        florence2Metadata(&w, skip: "general.architecture")
        w.add("general.architecture", .string("llama"))
        XCTAssertThrowsError(try Florence2Config(file: GGUFFile(bytes: w.bytes(), name: "x.gguf"))) { e in
            XCTAssertTrue("\(e)".contains("general.architecture"), "\(e)")
        }
    }

    func testModelFileFailsBeforeAllocatingWhenOverBudgetAndAllocatesThePlanOtherwise() throws {
        var w = GGUFWriter()
        florence2Metadata(&w)
        w.addTensor("t.embed.weight", shape: Shape(64, 16), floats: [Float](repeating: 0.5, count: 64 * 16))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(getpid()).gguf").path
        try w.write(to: path)
        defer { unlink(path) }
        XCTAssertThrowsError(try Florence2ModelFile(path: path, threads: 2, budgetBytes: 10 << 20)) { e in
            XCTAssertTrue("\(e)".contains(path), "\(e)")
            XCTAssertTrue("\(e)".contains("budget"), "\(e)")
        }
        let m = try Florence2ModelFile(path: path, threads: 2, budgetBytes: 1 << 30)
        XCTAssertEqual(m.plan.weightBytes, 64 * 16 * 4)
        XCTAssertEqual(m.arena.capacity, m.plan.arenaBytes)
        XCTAssertEqual(m.kvArena.capacity, m.plan.kvCacheBytes)
    }
}
