package dev.flotilla.agent.guest.process;

import dev.flotilla.agent.protocol.frame.Frame;

/** Where a process's output frames go: the connection that started it. */
@FunctionalInterface
public interface OutputTarget {
  /** Sends a frame; {@code false} when the connection is gone. */
  boolean send(Frame frame);
}
