package dev.flotilla.vm.supervisor;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import java.time.Duration;

/**
 * Opens a connection to a guest agent; blocking, called on the supervisor's blocking dispatcher.
 * A seam for drivers whose agents are reached another way (a bridged serial port).
 */
@FunctionalInterface
public interface AgentConnector {

  AgentClient connect(AgentAddress address, Duration deadline) throws Exception;

  /** The agent-protocol client over the agent's Unix socket. */
  AgentConnector DEFAULT = AgentClients::connect;
}
