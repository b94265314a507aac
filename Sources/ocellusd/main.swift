// ocellusd: the daemon (issue 5). Its parts exist in the Daemon module (configuration, topics,
// health, systemd notify) and in MQTT and Capture; the pipeline that joins them is not built yet,
// so this refuses to start rather than pretend to run.
import Foundation

FileHandle.standardError.write(Data("""
ocellusd: the daemon pipeline is not built yet (issue 5). Until then:
  ocellus check CONFIG     validates a configuration
  ocellus run --model M.gguf --task '<CAPTION>' IMAGE    runs Florence-2 on one image
  ocellus capture --source SOURCE --frames N --out DIR   checks a camera

""".utf8))
exit(2)
