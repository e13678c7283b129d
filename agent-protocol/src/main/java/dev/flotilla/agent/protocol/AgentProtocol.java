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

  /**
   * Exit code of a guest agent that ended its sandbox because its lease ran out: no frame from a
   * handshaken host within the lease of the last handshake (see HandshakeRequest.lease_ms). 75 is
   * sysexits' EX_TEMPFAIL: the sandbox is expected to run again, elsewhere, as a new incarnation.
   */
  public static final int EXIT_LEASE_EXPIRED = 75;

  private AgentProtocol() {}
}
