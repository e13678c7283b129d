package dev.flotilla.sandbox.protocol;

import org.apache.pekko.util.ByteString;

/** A chunk of the process's output; {@code stderr} tells which stream. */
public record ExecOutput(boolean stderr, ByteString data) implements ExecEvent {}
