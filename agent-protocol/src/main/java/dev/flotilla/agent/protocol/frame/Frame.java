package dev.flotilla.agent.protocol.frame;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Objects;

/**
 * One frame: a 10-byte big-endian header (payload length u32, stream id u32, type u8, flags u8)
 * followed by the payload. Stream 0 is the connection itself.
 */
public record Frame(int streamId, FrameType type, int flags, byte[] payload) {

  public static final int HEADER_SIZE = 10;
  /** DATA / WINDOW_UPDATE: the stderr channel (clear: stdout). */
  public static final int FLAG_STDERR = 0x1;
  /** DATA: the channel ends with this frame. */
  public static final int FLAG_END_OF_STREAM = 0x2;

  private static final byte[] EMPTY = new byte[0];

  public Frame {
    Objects.requireNonNull(type, "type");
    payload = payload == null ? EMPTY : payload;
    if ((flags & ~0xFF) != 0) throw new IllegalArgumentException("flags must fit in one byte: " + flags);
  }

  public static Frame request(int streamId, byte[] payload) {
    return new Frame(streamId, FrameType.REQUEST, 0, payload);
  }

  public static Frame response(int streamId, byte[] payload) {
    return new Frame(streamId, FrameType.RESPONSE, 0, payload);
  }

  public static Frame data(int streamId, boolean stderr, byte[] payload, boolean endOfStream) {
    int flags = (stderr ? FLAG_STDERR : 0) | (endOfStream ? FLAG_END_OF_STREAM : 0);
    return new Frame(streamId, FrameType.DATA, flags, payload);
  }

  public static Frame windowUpdate(int streamId, boolean stderr, int increment) {
    if (increment <= 0) throw new IllegalArgumentException("window increment must be positive: " + increment);
    return new Frame(streamId, FrameType.WINDOW_UPDATE, stderr ? FLAG_STDERR : 0,
        ByteBuffer.allocate(4).putInt(increment).array());
  }

  public static Frame goAway(String reason) {
    return new Frame(0, FrameType.GOAWAY, 0, reason.getBytes(StandardCharsets.UTF_8));
  }

  public boolean stderr() {
    return (flags & FLAG_STDERR) != 0;
  }

  public boolean endOfStream() {
    return (flags & FLAG_END_OF_STREAM) != 0;
  }

  /** The credit increment of a WINDOW_UPDATE (validated by the decoder to be positive). */
  public int windowIncrement() {
    return ByteBuffer.wrap(payload).getInt();
  }

  /** The reason of a GOAWAY. */
  public String reason() {
    return new String(payload, StandardCharsets.UTF_8);
  }

  @Override
  public String toString() {
    return "Frame[" + type + " stream=" + streamId + " flags=" + flags + " length=" + payload.length + "]";
  }
}
