// The worker pool: every index runs exactly once, on several threads, and a run allocates nothing.
import CMallocCounter
import Foundation
import XCTest
@testable import Compute

final class WorkerPoolTests: XCTestCase {
    func testEveryIndexRunsOnce() {
        for threads in [1, 2, 3, 8] {
            let pool = WorkerPool(threads: threads)
            let counts = UnsafeMutablePointer<Int32>.allocate(capacity: 1000)
            defer { counts.deallocate() }
            counts.initialize(repeating: 0, count: 1000)
            for _ in 0..<20 {
                pool.run(1000) { i in counts[i] &+= 1 }
            }
            for i in 0..<1000 { XCTAssertEqual(counts[i], 20, "index \(i) with \(threads) threads") }
        }
    }

    func testParallelForCoversTheRangeInDisjointChunks() {
        let pool = WorkerPool(threads: 3)
        for count in [0, 1, 2, 5, 16, 17, 1001] {
            let hits = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, count))
            defer { hits.deallocate() }
            hits.initialize(repeating: 0, count: max(1, count))
            pool.parallelFor(count, minChunk: 4) { r in for i in r { hits[i] &+= 1 } }
            for i in 0..<count { XCTAssertEqual(hits[i], 1, "count \(count) index \(i)") }
        }
    }

    func testUsesMoreThanOneThread() {
        let pool = WorkerPool(threads: 2)
        let ids = UnsafeMutablePointer<pthread_t>.allocate(capacity: 64)
        defer { ids.deallocate() }
        pool.run(64) { i in
            ids[i] = pthread_self()
            usleep(1000)
        }
        var distinct = Set<UInt>()
        for i in 0..<64 { distinct.insert(UInt(ids[i])) }
        XCTAssertGreaterThanOrEqual(distinct.count, 2)
    }

    private struct AddIndex: ParallelTask {
        let acc: UnsafeMutablePointer<Double>
        func callAsFunction(_ i: Int) { acc[i] += Double(i) }
    }

    private struct Halve: RangeTask {
        let acc: UnsafeMutablePointer<Double>
        func callAsFunction(_ r: Range<Int>) { for i in r { acc[i] *= 0.5 } }
    }

    func testTaskFormsRunEveryIndexAndAllocateNothingAfterWarmUp() {
        let pool = WorkerPool(threads: 2)
        let acc = UnsafeMutablePointer<Double>.allocate(capacity: 256)
        defer { acc.deallocate() }
        acc.initialize(repeating: 0, count: 256)
        pool.run(256, AddIndex(acc: acc))
        pool.parallelFor(256, minChunk: 8, Halve(acc: acc))
        omc_start()
        for _ in 0..<100 {
            pool.run(256, AddIndex(acc: acc))
            pool.parallelFor(256, minChunk: 8, Halve(acc: acc))
        }
        let n = omc_stop()
        XCTAssertEqual(n, 0, "WorkerPool.run/parallelFor with task structs allocated \(n) times in 200 calls")
        // acc[i] follows a ← (a + i)/2 from 0 (warm-up included: 101 rounds), which tends to i.
        for i in [0, 1, 100, 255] { XCTAssertEqual(acc[i], Double(i), accuracy: 1e-9 * Double(max(1, i))) }
    }
}

final class WorkerPoolLifetimeTests: XCTestCase {
    /// Pools come and go (a model reload makes a new one): each one's threads stop and are joined.
    func testPoolsAreReleasedAndTheirThreadsJoined() {
        weak var weakPool: WorkerPool?
        for _ in 0..<20 {
            let pool = WorkerPool(threads: 3)
            weakPool = pool
            let hits = UnsafeMutablePointer<Int32>.allocate(capacity: 30)
            hits.initialize(repeating: 0, count: 30)
            pool.run(30) { i in hits[i] &+= 1 }
            for i in 0..<30 { XCTAssertEqual(hits[i], 1) }
            hits.deallocate()
        }
        XCTAssertNil(weakPool, "the last pool is still alive: its workers keep it")
    }
}
