package dev.flotilla.vm.supervisor;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.time.Duration;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;

/**
 * Calls {@code AgentClients.connect(AgentAddress, Duration)} of agent-protocol, whether it
 * returns the client or a future of it. Looked up reflectively so this module builds against
 * the agent-protocol contract alone while the factory's exact shape settles.
 */
enum AgentClientsConnector implements AgentConnector {
  INSTANCE;

  private volatile Method method;

  @Override
  public AgentClient connect(AgentAddress address, Duration deadline) throws Exception {
    Method m = method;
    if (m == null) {
      m = Class.forName("dev.flotilla.agent.protocol.client.AgentClients").getMethod("connect", AgentAddress.class, Duration.class);
      method = m;
    }
    Object r;
    try {
      r = m.invoke(null, address, deadline);
    } catch (InvocationTargetException e) {
      if (e.getCause() instanceof Exception ex) throw ex;
      throw e;
    }
    if (r instanceof AgentClient c) return c;
    if (r instanceof CompletionStage<?> s) {
      return (AgentClient) s.toCompletableFuture().get(deadline.toMillis() + 100, TimeUnit.MILLISECONDS);
    }
    throw new IllegalStateException("AgentClients.connect returned " + r);
  }
}
