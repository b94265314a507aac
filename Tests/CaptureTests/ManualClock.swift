// A CaptureClock that only moves when told (or when something sleeps on it): pacing, stall and
// backoff tests run instantly and deterministically.
@testable import Capture

final class ManualClock: CaptureClock {
    var time: Double
    /// Every sleep, in order (backoff tests read the delays).
    var sleeps: [Double] = []
    init(_ start: Double = 1000) {
        time = start
        sleeps.reserveCapacity(1024) // growing it would show up in the no-allocation tests
    }
    func now() -> Double { time }
    func sleep(_ seconds: Double) {
        guard seconds > 0 else { return }
        sleeps.append(seconds)
        time += seconds
    }
    func advance(_ seconds: Double) { time += seconds }
}
