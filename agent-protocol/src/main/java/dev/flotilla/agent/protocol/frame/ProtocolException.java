package dev.flotilla.agent.protocol.frame;

import java.io.IOException;

/**
 * The peer sent bytes that break the framing rules (truncated, oversized, unknown type, a frame
 * on the wrong stream). The connection cannot be trusted after this: it is closed with a GOAWAY
 * carrying this message.
 */
public class ProtocolException extends IOException {
  public ProtocolException(String message) {
    super(message);
  }

  public ProtocolException(String message, Throwable cause) {
    super(message, cause);
  }
}
