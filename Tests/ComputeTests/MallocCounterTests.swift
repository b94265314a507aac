// The allocation counter that the no-allocation tests rely on must itself see allocations.
import CMallocCounter
import XCTest

final class MallocCounterTests: XCTestCase {
    func testCountsHeapAllocations() {
        omc_start()
        let p = malloc(100)
        let a = [Int](repeating: 7, count: 1000)
        let n = omc_stop()
        free(p)
        XCTAssertEqual(a.count, 1000)
        XCTAssertGreaterThanOrEqual(n, 2, "malloc and a Swift array allocation must both be counted")
    }

    func testCountsNothingWhenNothingAllocates() {
        var x = 0
        omc_start()
        for i in 0..<1000 { x &+= i }
        let n = omc_stop()
        XCTAssertEqual(x, 499500)
        XCTAssertEqual(n, 0)
    }
}
