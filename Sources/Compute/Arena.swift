// The arena: one allocation, sized at load from the worst case, handed out as tensor views.
import Foundation

// MARK: - Errors

/// Memory-planning failures, each naming what did not fit.
public enum MemoryError: Error, CustomStringConvertible, Equatable {
    /// A request did not fit in the arena.
    case arenaExhausted(requested: Int, used: Int, capacity: Int)
    /// The plan for a model exceeds the configured budget.
    case overBudget(needed: Int, budget: Int, detail: String)

    public var description: String {
        switch self {
        case let .arenaExhausted(requested, used, capacity):
            return "arena exhausted: requested \(requested) bytes with \(used) of \(capacity) in use; the memory plan is too small (a bug)"
        case let .overBudget(needed, budget, detail):
            return "memory plan needs \(needed) bytes but the budget is \(budget) bytes (\(detail)); raise model.memory_budget or lower the image size, prompt or token limits"
        }
    }
}

// MARK: - Arena

/// A bump allocator over one 64-byte-aligned block. `mark()`/`reset(to:)` release everything
/// allocated after a mark, so one inference reuses the same bytes every time.
public final class Arena: @unchecked Sendable {
    /// Bytes owned by the arena.
    public let capacity: Int
    /// Bytes handed out now.
    public private(set) var used: Int = 0
    /// The most bytes ever handed out at once.
    public private(set) var highWater: Int = 0
    @usableFromInline let block: UnsafeMutableRawPointer

    /// Allocates `capacity` bytes once (zeroed).
    public init(capacity: Int) {
        precondition(capacity >= 0)
        self.capacity = capacity
        var p: UnsafeMutableRawPointer?
        let rc = posix_memalign(&p, 64, max(capacity, 64))
        precondition(rc == 0 && p != nil, "posix_memalign(\(capacity)) failed: \(rc)")
        block = p!
        memset(block, 0, max(capacity, 64))
    }

    deinit { free(block) }

    /// A position to return to with `reset(to:)`.
    public func mark() -> Int { used }

    /// Releases everything allocated after `mark`.
    public func reset(to mark: Int = 0) {
        precondition(mark >= 0 && mark <= used, "bad arena mark \(mark) (used \(used))")
        used = mark
    }

    /// `bytes` rounded up to the arena's 64-byte alignment.
    @inlinable public static func aligned(_ bytes: Int) -> Int { (bytes + 63) & ~63 }

    /// Raw bytes, 64-byte aligned (module-internal).
    func allocateBytes(_ bytes: Int) throws -> UnsafeMutableRawPointer {
        let size = Arena.aligned(bytes)
        guard used + size <= capacity else {
            throw MemoryError.arenaExhausted(requested: size, used: used, capacity: capacity)
        }
        let p = block + used
        used += size
        if used > highWater { highWater = used }
        return p
    }

    /// A tensor view of `shape` (contents unspecified).
    public func tensor(_ shape: Shape) throws -> Tensor {
        let p = try allocateBytes(shape.count * MemoryLayout<Float>.stride)
        return Tensor(base: p.bindMemory(to: Float.self, capacity: shape.count), shape: shape)
    }
}
