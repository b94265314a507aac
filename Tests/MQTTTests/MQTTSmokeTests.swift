import XCTest
@testable import MQTT

final class MQTTSmokeTests: XCTestCase {
    func testModuleLinks() { XCTAssertTrue(true) }
}
