package dev.flotilla.sandbox.protocol;

import org.apache.pekko.util.ByteString;

/**
 * A chunk of a background process's output as an attach reads it from the guest's ring:
 * {@code offset} counts every byte of both channels since the process's first, so a reader that
 * comes back later asks for the offset after its last chunk. A chunk whose offset is above where
 * the reader asked means the ring dropped the bytes in between.
 */
public record ProcessOutput(long offset, boolean stderr, ByteString data) implements ExecEvent {
  /** The offset to attach from to read on after this chunk. */
  public long next() {
    return offset + data.size();
  }
}
