package dev.flotilla.agent.guest.process;

/**
 * How a process ended.
 *
 * <p>Java reports a death by signal N as exit value 128 + N (see {@code ProcessImpl} on Linux), the
 * shell's convention, and gives no other way to tell. So an exit value above 128 is reported as
 * {@code signal = value - 128}: a process that calls {@code exit(130)} itself is reported as killed
 * by signal 2. Exit values above 128 are, by that same convention, rare outside signal deaths.
 */
public record ProcessExit(int exitCode, int signal) {
  public static ProcessExit fromExitValue(int value) {
    return value > 128 ? new ProcessExit(0, value - 128) : new ProcessExit(value, 0);
  }
}
