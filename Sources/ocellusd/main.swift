// ocellusd: the daemon (issue 5). `ocellusd --config /etc/ocellus/ocellus.yaml` runs under systemd
// (Units/ocellusd.service); `--demo` runs it with a private Mosquitto on loopback and prints every
// message it publishes, which is what the README's first command does with Configs/demo.yaml.
import ArgumentParser
import Daemon
import Foundation
import Logging
import MQTT
#if canImport(Glibc)
import Glibc
#endif

// SIGHUP, SIGTERM and SIGINT: a handler writes the signal number to a pipe (write(2) is
// async-signal-safe) and a thread reads it and asks the service to reload or stop. Handlers work
// whichever thread the kernel picks, so no signal mask has to be kept right in every thread (a
// parent may also have left them blocked: Foundation's Process does; they are unblocked here).
nonisolated(unsafe) var signalWriteFD: Int32 = -1

/// Installs the handlers and returns the pipe's read end.
func installSignalHandlers() -> Int32 {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { fatalError("pipe: \(String(cString: strerror(errno)))") }
    signalWriteFD = fds[1]
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { sig in
        var b = UInt8(truncatingIfNeeded: sig)
        _ = write(signalWriteFD, &b, 1)
    }
    action.sa_flags = SA_RESTART
    sigemptyset(&action.sa_mask)
    var set = sigset_t()
    sigemptyset(&set)
    for s in [SIGHUP, SIGTERM, SIGINT] {
        sigaction(s, &action, nil)
        sigaddset(&set, s)
    }
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    return fds[0]
}

struct Ocellusd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ocellusd",
        abstract: "The Ocellus daemon: cameras in, Florence-2 on the CPU, results over MQTT.",
        discussion: """
            Reads the YAML configuration (every key: Configs/README.md), loads the model, opens the \
            cameras and publishes under <topic_prefix>/<node_id>/ (topics: README.md). SIGHUP reloads \
            the file (an invalid file is reported and the running configuration kept); SIGTERM or \
            SIGINT stops cleanly, publishing `offline`. Under systemd it speaks the notify protocol \
            (READY, RELOADING, STATUS, WATCHDOG, STOPPING). Exit status: 0 after a clean stop, 1 when \
            start-up fails (bad configuration, unloadable model), 2 for bad arguments.
            """,
        version: OcellusVersion.string)

    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "/etc/ocellus/ocellus.yaml"

    @Flag(help: "Start a private Mosquitto on a free loopback port, point the broker settings at it and print every message published under the node's topics (the README's demo).")
    var demo = false

    @Option(name: .customLong("run-for"), help: "Stop cleanly after this many seconds (e.g. for a demo or a benchmark); default: run until SIGTERM or SIGINT.")
    var runFor: Double?

    func validate() throws {
        if let r = runFor, !(r > 0) { throw ValidationError("--run-for takes a positive number of seconds") }
    }

    func run() throws {
        let underSystemd = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
            || ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil
        LoggingSystem.bootstrap { DaemonLogHandler(label: $0, timestamps: !underSystemd) }
        let logger = Logger(label: "ocellusd")

        var broker: LocalBroker?
        var watcher: MQTTClient?
        var options = DaemonService.Options(configPath: config)
        if demo {
            do {
                let b = try LocalBroker()
                broker = b
                let port = b.port
                options.override = { c in
                    c.broker.host = "127.0.0.1"
                    c.broker.port = port
                    c.broker.tls = nil
                    c.broker.username = nil
                    c.broker.password = nil
                }
                FileHandle.standardOutput.write(Data("demo: Mosquitto on 127.0.0.1:\(port) (watch it too: mosquitto_sub -p \(port) -t '#' -v)\n".utf8))
                watcher = try startWatcher(port: port, config: config)
            } catch {
                logger.critical("demo broker: \(error)")
                throw ExitCode.failure
            }
        }

        let service = DaemonService(options: options, logger: logger)
        let readFD = installSignalHandlers()
        let signals = Thread {
            while true {
                var b: UInt8 = 0
                let n = read(readFD, &b, 1)
                if n < 0 && errno == EINTR { continue }
                guard n == 1 else { return }
                if Int32(b) == SIGHUP { service.requestReload() } else { service.requestStop() }
            }
        }
        signals.name = "signals"
        signals.start()
        if let r = runFor {
            let t = Thread {
                Thread.sleep(forTimeInterval: r)
                service.requestStop()
            }
            t.start()
        }
        do {
            try service.run()
        } catch let e as ConfigurationError {
            for i in e.issues { FileHandle.standardError.write(Data(DaemonService.redacted("\(e.source):\(i)\n").utf8)) }
            logger.critical("cannot start: \(e.errors.count) configuration error(s) in \(e.source)")
            throw ExitCode.failure
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode.failure
        }
        if let w = watcher {
            Thread.sleep(forTimeInterval: 0.5)   // let the last messages (`offline`) reach the printer
            w.disconnect(timeout: 1)
        }
        broker?.stop()
    }

    /// Subscribes to everything on the demo broker and prints each message as it arrives.
    private func startWatcher(port: Int, config: String) throws -> MQTTClient {
        let c = try MQTTClient(clientID: "ocellus-demo-watch-\(getpid())", host: "127.0.0.1", port: port, keepalive: 30)
        try c.subscribe("#", qos: 1) { m in
            var text = m.string
            if text.count > 400 { text = String(text.prefix(400)) + "…" }
            let flag = m.retain ? " (retained)" : ""
            FileHandle.standardOutput.write(Data("\(m.topic)\(flag) \(text)\n".utf8))
        }
        try c.startConnecting()
        return c
    }
}

Ocellusd.main()
