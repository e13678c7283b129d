package dev.flotilla.node.local;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Where the node jar and the guest agent jar of this checkout are. */
final class Jars {
  static final Path NODE_JAR = Path.of("cluster-node", "target", "flotilla.jar");
  static final Path AGENT_JAR = Path.of("guest-agent", "target", "flotilla-guest-agent.jar");

  private Jars() {}

  /** flotilla.node.jar property, else cluster-node/target/flotilla.jar above this class or the working dir. */
  static Path nodeJar() throws IOException {
    String prop = System.getProperty("flotilla.node.jar");
    if (prop != null && !prop.isBlank()) return existing(Path.of(prop), "flotilla.node.jar");
    Path found = find(NODE_JAR);
    if (found == null) {
      throw new IOException("cannot find " + NODE_JAR + " (build it: mvn -DskipTests install -pl cluster-node -am,"
          + " or set -Dflotilla.node.jar)");
    }
    return found;
  }

  /** flotilla.agent.jar property / FLOTILLA_AGENT_JAR, else guest-agent/target/... next to the node jar's checkout. */
  static Path agentJar(Path nodeJar) throws IOException {
    String prop = System.getProperty("flotilla.agent.jar");
    if (prop == null || prop.isBlank()) prop = System.getenv("FLOTILLA_AGENT_JAR");
    if (prop != null && !prop.isBlank()) return existing(Path.of(prop), "flotilla.agent.jar");
    for (Path p = nodeJar.toAbsolutePath().getParent(); p != null; p = p.getParent()) {
      if (Files.isRegularFile(p.resolve(AGENT_JAR))) return p.resolve(AGENT_JAR);
    }
    Path found = find(AGENT_JAR);
    if (found == null) {
      throw new IOException("cannot find " + AGENT_JAR + " (build it: mvn -DskipTests install -pl cluster-node -am,"
          + " or set -Dflotilla.agent.jar)");
    }
    return found;
  }

  private static Path existing(Path p, String what) throws IOException {
    if (!Files.isRegularFile(p)) throw new IOException(what + ": no such file: " + p);
    return p.toAbsolutePath();
  }

  private static Path find(Path rel) {
    try {
      Path self = Path.of(Jars.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      for (Path p = self.getParent(); p != null; p = p.getParent()) {
        if (Files.isRegularFile(p.resolve(rel))) return p.resolve(rel).toAbsolutePath();
      }
    } catch (Exception ignored) {
      // fall through to the working directory
    }
    for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
      if (Files.isRegularFile(p.resolve(rel))) return p.resolve(rel).toAbsolutePath();
    }
    return null;
  }
}
