"""Helpers only methods use: the classifiers closed-form methods put on their features (:mod:`.classifiers`), the
representations learned on unlabeled data (:mod:`.representations`) and the label embeddings of class names
(:mod:`.label_embeddings`)."""
