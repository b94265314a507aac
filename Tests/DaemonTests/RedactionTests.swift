// Error texts that reach the log, the health topic and STATUS= never carry URL credentials.
import XCTest
@testable import Daemon

final class RedactionTests: XCTestCase {
    func testUserInformationOfURLsIsRedacted() {
        let t = "ocellus.yaml:3:9: broker.host: not a host name (got 'mqtt://ocellus:s3cret@broker.lan:1883'); give the name only"
        let r = DaemonService.redacted(t)
        XCTAssertFalse(r.contains("s3cret"), r)
        XCTAssertFalse(r.contains("ocellus:"), r)
        XCTAssertTrue(r.contains("mqtt://***@broker.lan:1883"), r)
        XCTAssertEqual(DaemonService.redacted("plain text, no URL"), "plain text, no URL")
        XCTAssertEqual(DaemonService.redacted("see https://example.org/docs"), "see https://example.org/docs")
    }
}
