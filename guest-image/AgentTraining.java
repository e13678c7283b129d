import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.OutputSink;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * The training workload of the agent's AOT cache (build-sandbox-runtime.sh, build.sh): what a node
 * does with a fresh agent, so that the classes of those paths are loaded and linked ahead of time.
 * Run by the build's own JDK against the agent jar's client classes:
 * {@code java -cp agent.jar AgentTraining SOCKET}. Exits non-zero when the agent did not answer.
 */
public final class AgentTraining {
  public static void main(String[] args) throws Exception {
    Duration t = Duration.ofSeconds(60);
    try (AgentClient c = AgentClients.connect(new AgentAddress(Path.of(args[0])), t)) {
      c.handshake("train", 1, t).get(60, TimeUnit.SECONDS);
      for (int i = 0; i < 3; i++) {
        String id = "train-" + i;
        c.exec(ExecRequest.of(id, "/bin/sh", "-c", "echo ok"), OutputSink.DISCARD, t).get(60, TimeUnit.SECONDS);
        int code = c.waitProcess(id, t).get(60, TimeUnit.SECONDS).exitCode();
        if (code != 0) throw new IllegalStateException("exec in the training root exited " + code);
      }
      byte[] data = "training\n".getBytes(StandardCharsets.UTF_8);
      c.writeFile("/tmp/train.txt", new ByteArrayInputStream(data), 0644, t).get(60, TimeUnit.SECONDS);
      ByteArrayOutputStream back = new ByteArrayOutputStream();
      c.readFile("/tmp/train.txt", back, t).get(60, TimeUnit.SECONDS);
      c.stat("/tmp/train.txt", false, t).get(60, TimeUnit.SECONDS);
    }
  }
}
