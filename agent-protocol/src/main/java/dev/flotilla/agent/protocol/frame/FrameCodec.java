package dev.flotilla.agent.protocol.frame;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;

/**
 * Encodes frames to bytes and decodes them from a stream, enforcing the framing rules. Anything
 * that breaks them is a {@link ProtocolException} whose message says what was wrong; the payload
 * buffer is only allocated after the length has been checked against the limit.
 */
public final class FrameCodec {

  private final int maxPayload;

  public FrameCodec(int maxPayload) {
    if (maxPayload < 64) throw new IllegalArgumentException("max payload too small: " + maxPayload);
    this.maxPayload = maxPayload;
  }

  public int maxPayload() {
    return maxPayload;
  }

  /** Header and payload in one array, so that a frame is one write on the wire. */
  public byte[] encode(Frame frame) {
    int length = frame.payload().length;
    if (length > maxPayload) {
      throw new IllegalArgumentException(
          "frame payload of " + length + " bytes exceeds the limit of " + maxPayload + " bytes");
    }
    ByteBuffer b = ByteBuffer.allocate(Frame.HEADER_SIZE + length);
    b.putInt(length).putInt(frame.streamId()).put((byte) frame.type().code()).put((byte) frame.flags());
    b.put(frame.payload());
    return b.array();
  }

  /**
   * Reads the next frame; {@code null} when the stream ends cleanly between frames.
   *
   * @throws ProtocolException when the bytes are not a valid frame
   * @throws IOException when reading fails
   */
  public Frame read(InputStream in) throws IOException {
    byte[] header = new byte[Frame.HEADER_SIZE];
    int got = readFully(in, header, 0, header.length);
    if (got == 0) return null;
    if (got < header.length) {
      throw new ProtocolException("truncated frame header: stream ended after " + got + " of "
          + Frame.HEADER_SIZE + " bytes");
    }
    ByteBuffer h = ByteBuffer.wrap(header);
    long length = Integer.toUnsignedLong(h.getInt());
    int streamId = h.getInt();
    int typeCode = h.get() & 0xFF;
    int flags = h.get() & 0xFF;
    if (length > maxPayload) {
      throw new ProtocolException("frame payload of " + length + " bytes exceeds the limit of "
          + maxPayload + " bytes (type " + typeCode + ", stream " + Integer.toUnsignedString(streamId) + ")");
    }
    FrameType type = FrameType.fromCode(typeCode);
    byte[] payload = new byte[(int) length];
    int read = readFully(in, payload, 0, payload.length);
    if (read < payload.length) {
      throw new ProtocolException("truncated " + type + " frame on stream " + Integer.toUnsignedString(streamId)
          + ": stream ended after " + read + " of " + length + " payload bytes");
    }
    Frame frame = new Frame(streamId, type, flags, payload);
    validate(frame);
    return frame;
  }

  private static void validate(Frame f) throws ProtocolException {
    switch (f.type()) {
      case GOAWAY -> {
        if (f.streamId() != 0) throw new ProtocolException("GOAWAY on stream " + f.streamId() + ", expected stream 0");
      }
      case WINDOW_UPDATE -> {
        if (f.streamId() == 0) throw new ProtocolException("WINDOW_UPDATE on stream 0");
        if (f.payload().length != 4) {
          throw new ProtocolException("WINDOW_UPDATE payload of " + f.payload().length + " bytes, expected 4");
        }
        int inc = f.windowIncrement();
        if (inc <= 0) throw new ProtocolException("WINDOW_UPDATE increment " + Integer.toUnsignedString(inc) + " is not a positive int");
      }
      default -> {
        if (f.streamId() == 0) throw new ProtocolException(f.type() + " frame on stream 0 (connection level)");
      }
    }
  }

  private static int readFully(InputStream in, byte[] buf, int off, int len) throws IOException {
    int total = 0;
    while (total < len) {
      int n;
      try {
        n = in.read(buf, off + total, len - total);
      } catch (EOFException e) {
        n = -1;
      }
      if (n < 0) break;
      total += n;
    }
    return total;
  }
}
