package dev.flotilla.persistence.evolution;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.persistence.kryo.KryoCodec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Test utility that (re)generates the "old shape" fixtures the evolution test reads.
 *
 * <p>The fixtures are committed and must normally never be regenerated: they stand for bytes
 * already sitting in production journals. Run it only to add a new fixture (then commit the new
 * file and leave the old ones alone):
 *
 * <pre>
 * cd persistence &amp;&amp; mvn -q -o dependency:build-classpath -Dmdep.outputFile=target/cp.txt &amp;&amp; \
 *   java -cp target/test-classes:target/classes:$(cat target/cp.txt) \
 *   dev.flotilla.persistence.evolution.EvolutionFixtures src/test/resources/evolution
 * </pre>
 *
 * Old and new shapes are registered under the same ids, as one class is across releases.
 */
public final class EvolutionFixtures {
  public static final String SANDBOX_CREATED_V1 = "sandbox-created.v1.bin";
  public static final String PLAIN_STATE_V1 = "plain-state.v1.bin";

  private EvolutionFixtures() {}

  static Config registrations(Class<?> holder) {
    String p = holder.getName();
    return ConfigFactory.parseString(
        "flotilla.serialization.kryo.classes {\n"
            + "\"" + p + "$SandboxCreated\" = 9100\n"
            + "\"" + p + "$Spec\" = 9101\n"
            + "\"" + p + "$Phase\" = 9102\n"
            + "\"" + p + "$PlainState\" = 9103\n"
            + "}");
  }

  static KryoCodec codecFor(Class<?> holder) {
    return new KryoCodec(registrations(holder), EvolutionFixtures.class.getClassLoader(), null);
  }

  static OldShapes.SandboxCreated oldSandboxCreated() {
    return new OldShapes.SandboxCreated(
        "sbx-42", new OldShapes.Spec("process", 2), "written by v1", List.of("a", "b"), OldShapes.Phase.RUNNING);
  }

  static OldShapes.PlainState oldPlainState() {
    return new OldShapes.PlainState("state-1", 3);
  }

  public static void main(String[] args) throws IOException {
    Path dir = Path.of(args.length > 0 ? args[0] : "src/test/resources/evolution");
    Files.createDirectories(dir);
    KryoCodec codec = codecFor(OldShapes.class);
    Files.write(dir.resolve(SANDBOX_CREATED_V1), codec.toBinary(oldSandboxCreated()));
    Files.write(dir.resolve(PLAIN_STATE_V1), codec.toBinary(oldPlainState()));
    System.out.println("wrote fixtures to " + dir.toAbsolutePath());
  }
}
