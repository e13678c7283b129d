package dev.flotilla.agent.protocol;

/** Constants both sides of the guest-agent protocol agree on. */
public final class AgentProtocol {
  /** Version sent in the handshake; bumped only for changes an old peer cannot ignore. */
  public static final int VERSION = 1;

  /** Largest frame payload either side accepts unless configured otherwise. */
  public static final int DEFAULT_MAX_PAYLOAD = 1 << 20;

  /** Output credit per exec and channel that the host grants up front unless it asks otherwise. */
  public static final int DEFAULT_OUTPUT_WINDOW = 256 * 1024;

  /** File transfer chunk: well under the frame limit, leaving room for the protobuf envelope. */
  public static final int DEFAULT_FILE_CHUNK = 256 * 1024;

  private AgentProtocol() {}
}
