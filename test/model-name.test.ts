import assert from 'node:assert/strict';
import { checkTrainRequest } from '../shared/training-request.ts';
import { MODEL_NAME_PATTERN } from '../shared/model-exchange/model-repository.ts';

describe('model name', () => {
  for (const name of ['pets', 'pets_v2', 'pets-2', 'pets.v2', '.hidden', '-dash', 'a'.repeat(64), 'a'.repeat(65), 'no spaces', '']) {
    it(`is one rule for the training request and the model repository: ${JSON.stringify(name.length > 20 ? `${name.length} letters` : name)}`, () => {
      const trainAccepts = (() => {
        try {
          checkTrainRequest({ datasetId: 'mnist', export: { name } });
          return true;
        } catch {
          return false;
        }
      })();
      assert.equal(trainAccepts, MODEL_NAME_PATTERN.test(name), `POST /api/train ${trainAccepts ? 'accepts' : 'refuses'} it, the repository ${trainAccepts ? 'refuses' : 'accepts'} it`);
    });
  }
});
