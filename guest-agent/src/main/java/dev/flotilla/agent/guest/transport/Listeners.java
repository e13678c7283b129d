package dev.flotilla.agent.guest.transport;

import java.io.IOException;
import java.nio.file.Path;

/** Opens the listener named by {@code --listen}. */
public final class Listeners {
  private Listeners() {}

  /**
   * {@code unix:/path/agent.sock}. To come: {@code serial:/dev/virtio-ports/...} (a virtio-serial
   * character device), as its own {@link AgentListener}.
   */
  public static AgentListener open(String spec) throws IOException {
    if (spec.startsWith("unix:") && spec.length() > "unix:".length()) {
      return UnixSocketListener.bind(Path.of(spec.substring("unix:".length())));
    }
    if (spec.startsWith("serial:") && spec.length() > "serial:".length()) {
      return SerialListener.open(Path.of(spec.substring("serial:".length())), 10_000);
    }
    throw new IllegalArgumentException("unsupported --listen '" + spec + "': expected unix:/path/to/agent.sock or serial:/dev/virtio-ports/NAME");
  }
}
