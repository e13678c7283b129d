package dev.flotilla.vm;

/**
 * How a VM ended.
 *
 * @param exitCode the VM process's exit code, or -1 if it was killed by a signal or is unknown
 * @param signal the signal that killed it, 0 if none
 * @param reason a human-readable cause ("killed by SIGKILL", "stopped", "exited with 3")
 * @param requested true if the exit was asked for (stop/kill through this API)
 */
public record VmExit(int exitCode, int signal, String reason, boolean requested) {}
