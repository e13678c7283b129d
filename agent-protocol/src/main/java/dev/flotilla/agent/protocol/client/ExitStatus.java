package dev.flotilla.agent.protocol.client;

/** How a guest process ended: {@code signal} is 0 when it exited on its own with {@code exitCode}. */
public record ExitStatus(int exitCode, int signal) {
  /** The shell's convention: the exit code, or 128 + the signal number. */
  public int shellCode() {
    return signal == 0 ? exitCode : 128 + signal;
  }
}
