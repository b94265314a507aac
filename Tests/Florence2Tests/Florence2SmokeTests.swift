import XCTest
@testable import Florence2

final class Florence2SmokeTests: XCTestCase {
    func testModuleLinks() { XCTAssertTrue(true) }
}
