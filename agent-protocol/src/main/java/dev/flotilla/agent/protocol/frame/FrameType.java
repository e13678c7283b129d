package dev.flotilla.agent.protocol.frame;

/** The type byte of a frame header. */
public enum FrameType {
  /** Payload: a {@code Request} protobuf; opens a stream. */
  REQUEST(1),
  /** Payload: a {@code Response} protobuf; answers the REQUEST on the same stream. */
  RESPONSE(2),
  /**
   * Payload: raw process output, one {@code WatchEvents} on a watch stream, or a forwarded port's
   * bytes (either way); flags say which channel and whether it ended.
   */
  DATA(3),
  /** Payload: 4-byte big-endian credit increment for the channel named by the flags. */
  WINDOW_UPDATE(4),
  /** Payload: UTF-8 reason; the sender closes the connection after it. Stream 0 only. */
  GOAWAY(5);

  private static final FrameType[] BY_CODE = new FrameType[6];

  static {
    for (FrameType t : values()) BY_CODE[t.code] = t;
  }

  private final int code;

  FrameType(int code) {
    this.code = code;
  }

  public int code() {
    return code;
  }

  public static FrameType fromCode(int code) throws ProtocolException {
    FrameType t = code > 0 && code < BY_CODE.length ? BY_CODE[code] : null;
    if (t == null) throw new ProtocolException("unknown frame type " + code);
    return t;
  }
}
