package dev.flotilla.agent.guest.transport;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * Where host connections come from. A socket yields many connections over time (a restarted host
 * reconnects); a serial port would yield one per time its other end is (re)opened. The agent's
 * server loop only sees the streams, so a new transport is one class and one case in
 * {@link Listeners#open}.
 */
public interface AgentListener extends Closeable {

  /** One host connection. */
  record Connection(InputStream in, OutputStream out, String description) {}

  /** Blocks until the next host connection. */
  Connection accept() throws IOException;

  /** The address as given to {@code --listen}. */
  String address();
}
