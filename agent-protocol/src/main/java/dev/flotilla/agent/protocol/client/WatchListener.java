package dev.flotilla.agent.protocol.client;

import java.util.List;

/**
 * Receives a watch's events. Called on the connection's reader thread: hand the events off and
 * return. The agent's credit for the watch comes back when a call returns, so a slow listener
 * slows the agent, whose bounded queue then drops events (an OVERFLOW event says where).
 */
public interface WatchListener {

  void onEvents(List<FsEvent> events);

  /** The watch ended (cancelled, its directory gone); no more calls follow. */
  default void onEnd(String reason) {}

  /** The connection broke; no more calls follow. */
  default void onError(Throwable error) {}
}
