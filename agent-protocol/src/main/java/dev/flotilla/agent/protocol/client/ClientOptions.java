package dev.flotilla.agent.protocol.client;

import dev.flotilla.agent.protocol.AgentProtocol;

/**
 * Tuning of a {@link FramedAgentClient}.
 *
 * @param maxPayload largest frame payload accepted and sent
 * @param outputWindow output credit per exec and channel (stdout, stderr)
 * @param fileChunk bytes per WriteFile / ReadFile call; must leave room under {@code maxPayload}
 */
public record ClientOptions(int maxPayload, int outputWindow, int fileChunk) {
  public ClientOptions {
    if (outputWindow <= 0) throw new IllegalArgumentException("outputWindow must be positive");
    if (fileChunk <= 0 || fileChunk > maxPayload - 4096) {
      throw new IllegalArgumentException("fileChunk must be positive and at least 4 KiB under maxPayload");
    }
  }

  public static ClientOptions defaults() {
    return new ClientOptions(AgentProtocol.DEFAULT_MAX_PAYLOAD, AgentProtocol.DEFAULT_OUTPUT_WINDOW,
        AgentProtocol.DEFAULT_FILE_CHUNK);
  }

  public ClientOptions withOutputWindow(int window) {
    return new ClientOptions(maxPayload, window, fileChunk);
  }
}
