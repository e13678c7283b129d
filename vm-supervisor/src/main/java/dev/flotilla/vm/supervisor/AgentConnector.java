package dev.flotilla.vm.supervisor;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import java.time.Duration;

/** Opens a connection to a guest agent; blocking, called on the supervisor's blocking dispatcher. */
@FunctionalInterface
public interface AgentConnector {

  AgentClient connect(AgentAddress address, Duration deadline) throws Exception;

  /** The agent-protocol client, {@code AgentClients.connect(address, deadline)}. */
  AgentConnector DEFAULT = AgentClientsConnector.INSTANCE;
}
