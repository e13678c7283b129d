package dev.flotilla.sandbox.protocol;

/** The process ended: {@code signal} is 0 when it exited on its own with {@code exitCode}. */
public record ExecExited(int exitCode, int signal) implements ExecEvent {}
