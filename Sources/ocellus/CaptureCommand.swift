// `ocellus capture` (issue 4).
import ArgumentParser

struct CaptureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "capture", abstract: "Not built yet (issue 4).")

    func run() throws {
        throw ValidationError("'ocellus capture' is not built yet (issue 4)")
    }
}
