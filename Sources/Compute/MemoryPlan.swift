// The memory plan: every byte an inference can touch, decided once at load (DESIGN.md rule 5).

// MARK: - Plan

/// The bytes a loaded model needs, itemized: mapped weights, the activation arena and the
/// attention caches. Built from the model's configuration and the configured limits before any
/// large allocation, checked against the budget, logged at start-up and printed by `ocellus inspect`.
public struct MemoryPlan: Sendable, Equatable {
    /// Where an item's bytes live.
    public enum Kind: String, Sendable, Equatable {
        /// Weights mapped read-only from the model file (no copy).
        case weights
        /// The activation arena (one allocation, reused by every inference).
        case arena
        /// Self-attention KV caches and the per-image cross-attention K/V.
        case kvCache = "kv-cache"
    }

    /// One line of the plan.
    public struct Item: Sendable, Equatable {
        /// Where it lives.
        public let kind: Kind
        /// What it holds, with its shape (e.g. `vision stage 0 residual [36864, 128] f32 x2`).
        public let name: String
        /// Bytes, already rounded to the arena's alignment where it comes from the arena.
        public let bytes: Int

        /// An item of `bytes` bytes.
        public init(kind: Kind, name: String, bytes: Int) {
            precondition(bytes >= 0, "negative plan item \(name)")
            self.kind = kind
            self.name = name
            self.bytes = bytes
        }
    }

    /// The items, in the order they were planned.
    public let items: [Item]
    /// The activation arena's capacity: the largest of the phases, plus what persists across them.
    public let arenaBytes: Int
    /// Lines that explain how `arenaBytes` was reached (which phase is the peak).
    public let notes: [String]

    /// A plan of `items` whose arena capacity is `arenaBytes` (at least every persistent arena
    /// item; phases that reuse the same bytes are summarized by the planner in `notes`).
    public init(items: [Item], arenaBytes: Int, notes: [String] = []) {
        self.items = items
        self.arenaBytes = arenaBytes
        self.notes = notes
    }

    /// Bytes of mapped weights.
    public var weightBytes: Int { items.filter { $0.kind == .weights }.reduce(0) { $0 + $1.bytes } }
    /// Bytes of KV caches.
    public var kvCacheBytes: Int { items.filter { $0.kind == .kvCache }.reduce(0) { $0 + $1.bytes } }
    /// Weights + arena + KV caches.
    public var totalBytes: Int { weightBytes + arenaBytes + kvCacheBytes }

    /// Throws `MemoryError.overBudget` when the plan needs more than `budget` bytes (nil: no budget).
    public func check(budget: Int?) throws {
        guard let budget else { return }
        if totalBytes > budget {
            throw MemoryError.overBudget(
                needed: totalBytes, budget: budget,
                detail: "weights \(MemoryPlan.format(weightBytes)), arena \(MemoryPlan.format(arenaBytes)), KV caches \(MemoryPlan.format(kvCacheBytes))")
        }
    }

    /// A human-readable table of the plan.
    public func render() -> String {
        var out: [String] = []
        for kind in [Kind.weights, .arena, .kvCache] {
            let rows = items.filter { $0.kind == kind }
            guard !rows.isEmpty else { continue }
            out.append("  \(kind.rawValue):")
            for r in rows { out.append("    \(MemoryPlan.format(r.bytes).padded(to: 11)) \(r.name)") }
        }
        for n in notes { out.append("  note: \(n)") }
        out.append("  total: weights \(MemoryPlan.format(weightBytes)) (mapped) + arena \(MemoryPlan.format(arenaBytes)) + KV caches \(MemoryPlan.format(kvCacheBytes)) = \(MemoryPlan.format(totalBytes))")
        return out.joined(separator: "\n")
    }

    /// `bytes` as a short human figure (binary units, e.g. `18.0 MiB`).
    public static func format(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(bytes), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        if u == 0 { return "\(bytes) B" }
        let tenths = (v * 10).rounded() / 10
        return "\(tenths) \(units[u])"
    }
}

extension String {
    fileprivate func padded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
