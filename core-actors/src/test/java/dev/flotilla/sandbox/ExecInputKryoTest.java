package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.persistence.kryo.KryoCodec;
import dev.flotilla.sandbox.protocol.ExecInput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.InteractiveExec;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.Test;

/**
 * An interactive exec's spec and input cross nodes (the API edge on one, the sandbox's VM on
 * another, the input inside a StreamRef): each is bound to the Kryo serializer and comes back equal.
 */
class ExecInputKryoTest {

  static List<Object> values() {
    return List.of(
        new InteractiveExec(new ExecSpec(List.of("sh"), Map.of("A", "b"), "/tmp", "1000"), true, 40, 120, "xterm-256color"),
        InteractiveExec.pipes(new ExecSpec(List.of("cat"), Map.of(), "")),
        new ExecInput.Stdin(ByteString.fromString("ls\u0003\n")), new ExecInput.Resize(50, 200), new ExecInput.Signal(2),
        new ExecInput.CloseStdin());
  }

  @Test
  void everyValueRoundTripsThroughKryo() {
    KryoCodec codec = new KryoCodec(ConfigFactory.load(), getClass().getClassLoader(), () -> null);
    for (Object v : values()) assertEquals(v, codec.fromBinary(codec.toBinary(v)), v.toString());
  }

  @Test
  void pekkoPicksTheKryoSerializerForTheInput() {
    ActorTestKit kit = ActorTestKit.create();
    try {
      var serialization = SerializationExtension.get(kit.system().classicSystem());
      for (Object v : values()) {
        if (v instanceof ExecInput) {
          assertEquals("KryoSerializer", serialization.findSerializerFor(v).getClass().getSimpleName(), v.toString());
        }
      }
    } finally {
      kit.shutdownTestKit();
    }
  }
}
