"""Evaluation protocols. Each knows nothing about which method it runs: it only uses the
``benchmark.method.Method`` interface (``encode_ecg``, ``zero_shot_scores``, ``ecg_backbone``)."""

PROTOCOLS = {
    "zero-shot": "class prompts -> cosine scores on the test split (text-tower methods only)",
    "few-label": "linear probe and fine-tune on 1/10/100 % of the PTB-XL training labels",
    "cross-dataset": "PTB-XL-pretrained encoders on MIT-BIH (DS1 -> DS2) and CinC 2017: probe and zero-shot",
    "text-ceiling": "the test reports classified with the class prompts (trained text tower / bare LM), beside "
                    "zero-shot; PVC/AF diagnostics for the cross-dataset prompts (text-tower methods only)",
}
