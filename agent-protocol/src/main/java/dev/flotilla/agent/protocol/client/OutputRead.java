package dev.flotilla.agent.protocol.client;

import java.util.List;

/**
 * Output of a detached process read from its agent-side ring.
 *
 * @param offset offset of the first byte of {@code chunks}; above the one asked for when the ring
 *     had dropped older output (the difference was lost)
 * @param chunks in order, each of one channel
 * @param eof both channels have ended and nothing follows these chunks
 */
public record OutputRead(long offset, List<Chunk> chunks, boolean eof) {

  public OutputRead {
    chunks = List.copyOf(chunks);
  }

  /** A run of bytes of one channel. */
  public record Chunk(boolean stderr, byte[] data) {}

  /** The offset to read from next. */
  public long next() {
    long n = offset;
    for (Chunk c : chunks) n += c.data().length;
    return n;
  }
}
