# Writes python-writer.gguf with the PyPI `gguf` package's GGUFWriter (the reference writer).
# Run: python Quantization/fixture_gguf_python_writer.py Tests/ComputeTests/Fixtures/gguf/python-writer.gguf   (gguf==0.19.0, numpy)
import sys
import numpy as np
import gguf

w = gguf.GGUFWriter(sys.argv[1], arch="florence2")
w.add_uint32("ocellus.format_version", 1)
w.add_string("ocellus.precision", "int8")
w.add_float32("florence2.layer_norm_eps", 1e-5)
w.add_bool("florence2.text.scale_embedding", False)
w.add_array("florence2.vision.depths", [1, 1, 9, 1])  # the gguf package stores ints as i32 arrays
w.add_array("tokenizer.ggml.tokens", ["<s>", "Ġthe", "</s>"])
w.add_key_value("florence2.image.mean", [0.485, 0.456, 0.406], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
w.add_key_value("florence2.vision.embed_dim", [128, 256, 512, 1024], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT32)
w.add_tensor("v.conv0.b", np.arange(5, dtype=np.float32) - 2)
w.add_tensor("t.q.qweight", (np.arange(2 * 64, dtype=np.int32) % 255 - 127).astype(np.int8).reshape(2, 64))
w.add_tensor("ids", np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
